"""Fit the paper's NeRV to one video: L2 loss, Adam, 10 % warm-up from 0.1x then cosine to 0, batch 2."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from xinc import __version__
from xinc.data.datasets import dataset_names
from xinc.errors import XincError
from xinc.models.io import build_model, load_model, save_model
from xinc.models.nerv import NeRV, NeRVConfig, nerv_config_for_budget, nerv_param_count
from xinc.outputs import owned_output
from xinc.train.common import (
    Clock,
    TrainResult,
    check_choice,
    check_hw,
    check_out,
    check_positive,
    finish_stage,
    finished_run,
    frame_psnrs,
    load_source,
    nerv_lr,
    note,
    predict,
    prepare_stage,
    progress_bar,
    save_checkpoint,
    save_metrics,
)
from xinc.train.metrics import bits_per_pixel
from xinc.train.quant import num_params, quantize_model
from xinc.utils import resolve_device, seed_everything, to_jsonable
from xinc.validate import alloc, path_out


@dataclass
class TrainNeRVConfig:
    """Every hyper-parameter of a NeRV fit (defaults = the paper: 978,557 parameters at 128x256, 1000 epochs)."""

    video: str | None = None  # frame folder or video file; with `dataset`, the clip id
    out: str | None = None  # output folder (staged in <out>.partial until finished)
    dataset: str | None = None  # cityscapes-vps | vipseg: train on all frames of clip `video` under `root`
    root: str | None = None  # dataset root folder (with `dataset`)
    size: tuple[int, int] = (128, 256)  # (H, W) frames are resized to (bicubic)
    crop: tuple[int, int] | None = None  # centre crop (h, w) before resizing, e.g. (640, 1280) for VIPSeg
    frames: int | None = None  # use the first N frames (None = all)
    epochs: int = 1000
    lr: float = 1e-3  # peak Adam learning rate
    batch: int = 2
    warmup: float = 0.1  # fraction of training spent warming up linearly
    warmup_start: float = 0.1  # lr multiplier at the start of the warm-up
    seed: int = 0  # seeds the initial weights and the per-epoch shuffle
    device: str = "auto"  # auto | cpu | cuda[:i]
    embed: str = "pe_1.25_80"  # positional encoding pe_<base>_<levels>
    strides: list[int] = field(default_factory=lambda: [4, 2, 2])  # PixelShuffle factor of each block
    kernel_sizes: list[int] | None = None  # conv kernel of each block (None = 3 for all)
    widths: list[int] | None = None  # channels after each block (None = NeRV's rule from fc_dim, reduce, lower_width)
    reduce: float = 1.2  # width reduction per block
    lower_width: int = 6  # minimum block width
    modelsize: float = 1.0  # parameter budget in millions (sets fc_dim)
    fc_dim: int | None = None  # stem channels (None = the largest within modelsize)
    head_ks: int = 3  # kernel of the RGB head
    act: str = "gelu"  # gelu | relu | silu
    eval_every: int = 10  # evaluate all frames, keep the best weights and checkpoint every N epochs
    log_every: int = 10  # refresh the progress bar's running PSNR every N steps (one host sync each)
    resume: bool = False  # continue an interrupted run from <out>.partial
    overwrite: bool = False  # replace an earlier xinc output in <out> (never a folder xinc did not write)
    progress: bool = True  # show a progress bar on stderr


def validate_nerv_config(cfg: TrainNeRVConfig, need_source: bool = True) -> None:
    """Reject out-of-range options with one clear line (before anything is written)."""
    check_out(cfg.out)
    path_out(cfg.out, inputs=[cfg.root if cfg.dataset else cfg.video], overwrite=cfg.overwrite or cfg.resume)
    for flag, v in (("--epochs", cfg.epochs), ("--batch", cfg.batch), ("--eval-every", cfg.eval_every),
                    ("--log-every", cfg.log_every), ("--lower-width", cfg.lower_width), ("--head-ks", cfg.head_ks)):
        check_positive(v, flag, integer=True)
    for flag, v in (("--lr", cfg.lr), ("--reduce", cfg.reduce), ("--modelsize", cfg.modelsize)):
        check_positive(v, flag)
    if cfg.frames is not None:
        check_positive(cfg.frames, "--frames", integer=True)
    if cfg.fc_dim is not None:
        check_positive(cfg.fc_dim, "--fc-dim", integer=True)
    if not (0.0 <= cfg.warmup < 1.0):
        raise XincError(f"--warmup {cfg.warmup}: must be in [0, 1)")
    if not (0.0 <= cfg.warmup_start <= 1.0):
        raise XincError(f"--warmup-start {cfg.warmup_start}: must be in [0, 1]")
    _check_blocks(cfg)
    check_choice(cfg.act, "--act", ("gelu", "relu", "silu"))
    check_hw(cfg.size, "--size")
    check_hw(cfg.crop, "--crop")
    # a batch's full-resolution activations (at least lower_width channels + RGB), kept for backward
    alloc(24.0 * cfg.batch * cfg.size[0] * cfg.size[1] * (3 + cfg.lower_width), f"--size {cfg.size[0]}x"
          f"{cfg.size[1]} with --batch {cfg.batch}", "choose a smaller --size or --batch")
    _check_source(cfg, need_source)


def _check_blocks(cfg: TrainNeRVConfig) -> None:
    """One positive stride per block; widths and kernel sizes, when given, one per block."""
    if not cfg.strides or any(not isinstance(s, int) or s < 1 for s in cfg.strides):
        raise XincError(f"--strides {cfg.strides}: give one positive integer per block, e.g. 4 2 2")
    if cfg.widths is not None and (len(cfg.widths) != len(cfg.strides) or any(
            not isinstance(w, int) or w < 1 for w in cfg.widths)):
        raise XincError(f"--widths {cfg.widths}: give one positive integer per block ({len(cfg.strides)} strides)")
    if cfg.kernel_sizes is not None and len(cfg.kernel_sizes) != len(cfg.strides):
        raise XincError(f"--kernel-sizes {cfg.kernel_sizes}: give one per block ({len(cfg.strides)} strides)")


def _check_source(cfg: TrainNeRVConfig, need_source: bool) -> None:
    """A dataset needs --root and --video; otherwise --video is the frame folder or video file."""
    if cfg.dataset is not None:
        check_choice(cfg.dataset, "--dataset", dataset_names())
        if not cfg.root:
            raise XincError(f"--dataset {cfg.dataset}: --root (the dataset folder) is required")
        if not cfg.video:
            raise XincError(f"--dataset {cfg.dataset}: --video (the clip id) is required")
    elif need_source and not cfg.video:
        raise XincError("--video: a frame folder or video file is required")


def _fc_dim_for_widths(base: NeRVConfig, widths: list[int], budget: float) -> int:
    """Largest fc_dim whose decoder with these fixed block widths keeps <= budget parameters."""
    def count(d: int) -> int:
        return nerv_param_count(dataclasses.replace(base, fc_dim=d, widths=list(widths)))

    if count(1) > budget:
        raise ValueError(f"modelsize {budget / 1e6:g}M is too small for widths {widths} even with fc_dim=1")
    lo, hi = 1, 2
    while count(hi) <= budget:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # the count grows with fc_dim
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) <= budget else (lo, mid)
    return lo


def nerv_model_config(cfg: TrainNeRVConfig, num_frames: int) -> NeRVConfig:
    """The decoder config for these options (fc_dim from the parameter budget, SPEC 1.2)."""
    H, W = cfg.size
    try:
        mc = nerv_config_for_budget(
            height=H, width=W, num_frames=num_frames, strides=list(cfg.strides),
            kernel_sizes=list(cfg.kernel_sizes) if cfg.kernel_sizes else None, reduce=cfg.reduce,
            lower_width=cfg.lower_width, modelsize=cfg.modelsize, embed=cfg.embed, head_ks=cfg.head_ks,
            fc_dim=cfg.fc_dim if cfg.fc_dim or not cfg.widths else 1,
        )
        if cfg.widths:  # explicit block widths: fc_dim from the budget with these widths
            fc_dim = cfg.fc_dim or _fc_dim_for_widths(mc, list(cfg.widths), cfg.modelsize * 1e6)
            mc = dataclasses.replace(mc, fc_dim=fc_dim, widths=list(cfg.widths))
        mc.act = cfg.act
        mc.validate()
    except ValueError as e:
        raise XincError(f"invalid NeRV options (--size/--strides/--kernel-sizes/--widths/--modelsize/--embed): {e}"
                        ) from None
    return mc


def nerv_data_record(cfg: TrainNeRVConfig, from_tensor: bool) -> dict[str, Any]:
    """The data source as recorded in config.json (enough for `xinc reconstruct` to find the ground truth)."""
    common = {"crop": list(cfg.crop) if cfg.crop else None, "size": list(cfg.size), "frames": cfg.frames}
    if from_tensor:
        return {"kind": "tensor", "src": None, **common}
    if cfg.dataset is not None:
        return {"kind": "dataset", "dataset": cfg.dataset, "root": str(Path(cfg.root).resolve()),
                "video": cfg.video, **common}
    return {"kind": "video", "src": str(Path(cfg.video).resolve()), **common}


def train_nerv(
    config: TrainNeRVConfig,
    *,
    frames: torch.Tensor | None = None,
    command: str | None = None,
    callback: Callable[[int, dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Fit a NeRV to the video of `config` (or the (T, 3, H, W) `frames`); write <out>/ and return it.

    `callback(epoch, eval_record)` runs after every evaluation and checkpoint (raising there
    interrupts the run; it can then be resumed with `resume=True`).
    """
    cfg = config
    validate_nerv_config(cfg, need_source=frames is None)
    out = check_out(cfg.out)
    nerv_model_config(cfg, 1)  # architecture errors before any data is read
    data = nerv_data_record(cfg, frames is not None)
    if frames is None:
        video = load_source(data)
    else:
        video = frames.detach().to(torch.float32)
        if video.dim() != 4 or video.shape[1] != 3 or tuple(video.shape[2:]) != tuple(cfg.size):
            raise XincError(f"frames: expected a (T, 3, {cfg.size[0]}, {cfg.size[1]}) tensor, got {tuple(video.shape)}")
        if cfg.frames:
            video = video[: cfg.frames]
    T = int(video.shape[0])
    device = resolve_device(cfg.device)
    model_cfg = nerv_model_config(cfg, T)
    gen = seed_everything(cfg.seed)
    model = build_model(model_cfg, gen).to(device)
    train_section = {**to_jsonable(cfg), "out": str(out), "device": str(device), "data": data, "num_frames": T,
                     "command": command, "optimizer": "Adam(betas=(0.9, 0.999), eps=1e-8)", "loss": "L2 (MSE)",
                     "lr_schedule": f"per iteration: {cfg.warmup:g} linear warm-up from {cfg.warmup_start:g}x, "
                     "then cosine to 0"}
    run_config = {"xinc_version": __version__, "model": to_jsonable(model_cfg), "train": train_section}

    if cfg.resume and (done := finished_run(out, run_config)) is not None:
        note(f"{out}: this run already finished; nothing to resume")
        return TrainResult(out_dir=out, metrics=done, model=load_model(out, device))
    with owned_output(out, inputs=[cfg.root if cfg.dataset else cfg.video], overwrite=cfg.overwrite, resume=True,
                      kind="train") as stage:
        try:
            metrics = _fit(model, video.to(device), cfg, stage, run_config, callback)
        except KeyboardInterrupt:
            note(f"interrupted; the run is kept in {stage}; rerun the same command with --resume to continue")
            raise
    return TrainResult(out_dir=out, metrics=metrics, model=model)


def _eval(model: NeRV, video: torch.Tensor) -> dict[str, Any]:
    pred = predict(model, None)
    ps = frame_psnrs(pred, video)
    return {"psnr": sum(ps["psnr_float"]) / len(ps["psnr_float"]),
            "psnr_8bit": sum(ps["psnr_8bit"]) / len(ps["psnr_8bit"]),
            "loss": float(F.mse_loss(pred, video)), "per_frame": ps}


def _fit(model: NeRV, video: torch.Tensor, cfg: TrainNeRVConfig, stage: Path, run_config: dict[str, Any],
         callback) -> dict[str, Any]:
    device = video.device
    T = video.shape[0]
    ckpt = prepare_stage(stage, run_config, cfg.resume)
    with torch.no_grad():
        emb = model.embed(list(range(T))).detach()  # the PE is fixed: encode every frame index once
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = math.ceil(T / cfg.batch)
    if ckpt is None:
        epoch, evals, resumed = 0, [], False
        best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        initial = {k: v for k, v in _eval(model, video).items() if k != "per_frame"}
        best_psnr, best_epoch = float("-inf"), 0
        clock = Clock()
    else:
        model.load_state_dict(ckpt.weights)
        opt.load_state_dict(ckpt.state["optimizer"])
        shuffle.set_state(ckpt.state["shuffle_rng"])
        p = ckpt.progress
        epoch, evals, best_psnr, best_epoch, initial = p["step"], p["evals"], p["best_psnr"], p["best_epoch"], p[
            "initial"]
        best_state, resumed = ckpt.best, True
        clock = Clock(p["wall_time_s"], p["train_time_s"])

    total = cfg.epochs * steps_per_epoch
    bar = progress_bar(total, epoch * steps_per_epoch, cfg.progress, "train nerv")
    clock.start_training()
    while epoch < cfg.epochs:
        perm = torch.randperm(T, generator=shuffle).to(device)  # one host->device copy per epoch
        for i in range(steps_per_epoch):
            idx = perm[i * cfg.batch : (i + 1) * cfg.batch]
            lr = nerv_lr(cfg.lr, epoch, i, steps_per_epoch, cfg.epochs, cfg.warmup, cfg.warmup_start)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(model.decode(emb[idx]), video[idx])
            loss.backward()
            opt.step()
            it = epoch * steps_per_epoch + i + 1
            if it % cfg.log_every == 0 or it == total:
                bar.update(it - bar.n)
                bar.set_postfix_str(f"psnr {float(-10 * torch.log10(loss.detach())):.2f} dB lr {lr:.2e}",
                                    refresh=False)
        epoch += 1
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            clock.stop_training()
            rec = {"epoch": epoch, **{k: v for k, v in _eval(model, video).items() if k != "per_frame"}}
            evals.append(rec)
            if rec["psnr"] > best_psnr:
                best_psnr, best_epoch = rec["psnr"], epoch
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            progress = {"evals": evals, "best_psnr": best_psnr, "best_epoch": best_epoch, "initial": initial,
                        "wall_time_s": clock.wall, "train_time_s": clock.train}
            save_checkpoint(stage, epoch, model, best_state, opt, progress,
                            extra_tensors={"shuffle_rng": shuffle.get_state()})
            if callback is not None:
                callback(epoch, rec)
            clock.start_training()
    clock.stop_training()
    bar.close()

    final = evals[-1]
    model.load_state_dict(best_state)
    best = _eval(model, video)
    qmodel, qbits = quantize_model(model)
    quant = _eval(qmodel, video)
    n = num_params(model)
    pixels = T * video.shape[2] * video.shape[3]
    steps = cfg.epochs * steps_per_epoch
    metrics = {
        "kind": "nerv",
        "psnr_definition": "psnr: mean over frames of 10*log10(1/MSE) of the raw 0.5*tanh+0.5 output (NeRV "
        "convention); psnr_8bit: same after clamping to [0,1] and 8-bit rounding",
        "evals": evals,
        "psnr": [e["psnr"] for e in evals],
        "initial_psnr": initial["psnr"],
        "best_psnr": best["psnr"],
        "best_psnr_8bit": best["psnr_8bit"],
        "best_epoch": best_epoch,
        "per_frame_psnr": best["per_frame"]["psnr_float"],
        "per_frame_psnr_8bit": best["per_frame"]["psnr_8bit"],
        "final_psnr": final["psnr"],
        "final_psnr_8bit": final["psnr_8bit"],
        "num_params": n,
        "num_frames": T,
        "num_pixels": pixels,
        "bpp_32bit": bits_per_pixel(32 * n, pixels),
        "bpp_8bit": bits_per_pixel(qbits, pixels),
        "quant_8bit": {"psnr": quant["psnr"], "psnr_8bit": quant["psnr_8bit"], "bits": qbits,
                       "scheme": "per-row affine min/scale, 8-bit codes; row min and scale as float32 counted"},
        "psnr_8bit_weights": quant["psnr"],
        "epochs": cfg.epochs,
        "steps": steps,
        "wall_time_s": clock.wall,
        "train_time_s": clock.train,
        "steps_per_s": steps / clock.train if clock.train > 0 else None,
        "s_per_epoch": clock.train / cfg.epochs,
        "resumed": resumed,
        "device": str(device),
    }
    save_model(model, stage, extra={"train": run_config["train"]})
    save_metrics(stage, metrics)
    finish_stage(stage)
    return metrics
