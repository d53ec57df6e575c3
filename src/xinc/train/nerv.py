"""Fit the paper's NeRV to one video: L2 loss, Adam, 10 % warm-up from 0.1x then cosine to 0, batch 2.

Only what is NeRV-specific lives here (config, data, model, the epoch of steps, evaluation); the loop
(resume, evaluation cadence, best weights, checkpoints, metrics) is `xinc.train.loop`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import torch
import torch.nn.functional as F
import tyro

from xinc.data.datasets import dataset_names
from xinc.errors import XincError
from xinc.fields import HW, OptionalHW
from xinc.models.nerv import NeRV, NeRVConfig, nerv_config_for_budget, nerv_param_count
from xinc.train.common import Clock, TrainResult, check_out, frame_psnrs, load_source, nerv_lr, predict
from xinc.train.loop import Log, Task, make_job, run, seeded_model
from xinc.utils import resolve_device
from xinc.validate import alloc, choice, finite, finite_positive, hw, optional, path_out, positive_int


@dataclass
class TrainNeRVConfig:
    """Train the paper's NeRV (frame-index positional encoding -> PixelShuffle conv decoder) on one video.

    Defaults are the paper's: pe_1.25_80, strides 4 2 2, kernels 3, reduce 1.2, lower width 6,
    model size 1.0M (978,557 parameters at 128x256), GELU, L2 loss, Adam peak 1e-3 with 10 % warm-up
    from 0.1x then cosine to 0 (set every iteration), batch 2, 1000 epochs. Writes OUT/model.safetensors
    (best weights), OUT/config.json, OUT/metrics.json; the run lives in OUT.partial until it finishes.
    Examples: xinc train nerv --video frames/ --out runs/nerv --frames 30 --crop 320x640
              xinc train nerv --dataset vipseg --root VIPSeg_720P --video 12_n-ytHkMceew --out runs/v
    """

    video: Annotated[str | None, tyro.conf.arg(metavar="PATH", help_behavior_hint="(required)")] = None
    """Frame folder or video file (mp4, ...); with --dataset, the clip id."""
    out: Annotated[str | None, tyro.conf.arg(metavar="PATH", help_behavior_hint="(required)")] = None
    """Output folder (staged in OUT.partial, renamed to OUT when the run finishes)."""
    dataset: str | None = None
    """cityscapes-vps | vipseg: train on all frames of clip --video under --root."""
    root: str | None = None
    """Dataset root folder (with --dataset)."""
    size: HW = (128, 256)
    """HxW frames are resized to (bicubic)."""
    crop: OptionalHW = None
    """Centre crop HxW before resizing, e.g. 640x1280 (VIPSeg, paper)."""
    frames: int | None = None
    """Use the first N frames (default: all)."""
    epochs: int = 1000
    """Training epochs."""
    lr: float = 1e-3
    """Peak learning rate."""
    batch: int = 2
    """Frames per step."""
    warmup: float = 0.1
    """Fraction of training with linear warm-up."""
    warmup_start: float = 0.1
    """lr multiplier at the start of the warm-up."""
    seed: int = 0
    """Seed of the initial weights and the per-epoch shuffle."""
    device: str = "auto"
    """auto | cpu | cuda[:i]."""
    embed: str = "pe_1.25_80"
    """Positional encoding pe_<base>_<levels>."""
    strides: list[int] = field(default_factory=lambda: [4, 2, 2])
    """PixelShuffle factor of each block (their product must divide --size)."""
    kernel_sizes: list[int] | None = None
    """Odd conv kernel size of each block (default: 3 for every block)."""
    widths: list[int] | None = None
    """Channels after each block (default: NeRV's rule from fc_dim, --reduce and --lower-width)."""
    reduce: float = 1.2
    """Width reduction factor per block."""
    lower_width: int = 6
    """Minimum block width."""
    modelsize: float = 1.0
    """Parameter budget in millions; sets fc_dim."""
    fc_dim: int | None = None
    """Stem channels (default: the largest that fits --modelsize)."""
    head_ks: int = 3
    """Kernel size of the RGB head."""
    act: str = "gelu"
    """Activation: gelu | relu | silu."""
    eval_every: int = 10
    """Evaluate all frames, keep the best weights and checkpoint every N epochs."""
    log_every: int = 10
    """Refresh the progress bar's running PSNR every N steps (one host sync each)."""
    resume: bool = False
    """Continue an interrupted run from OUT.partial (same options)."""
    overwrite: bool = False
    """Replace OUT when it is an earlier xinc output (a folder xinc did not write is never replaced)."""
    progress: bool = True
    """Show a progress bar on stderr (--no-progress to hide)."""


def validate_nerv_config(cfg: TrainNeRVConfig, need_source: bool = True) -> None:
    """Reject out-of-range options with one clear line (before anything is written); normalises size/crop."""
    check_out(cfg.out)
    path_out(cfg.out, inputs=[cfg.root if cfg.dataset else cfg.video], overwrite=cfg.overwrite or cfg.resume)
    for flag, v in (("--epochs", cfg.epochs), ("--batch", cfg.batch), ("--eval-every", cfg.eval_every),
                    ("--log-every", cfg.log_every), ("--lower-width", cfg.lower_width), ("--head-ks", cfg.head_ks)):
        positive_int(v, flag)
    for flag, v in (("--lr", cfg.lr), ("--reduce", cfg.reduce), ("--modelsize", cfg.modelsize)):
        finite_positive(v, flag)
    optional(positive_int, cfg.frames, "--frames")
    optional(positive_int, cfg.fc_dim, "--fc-dim")
    if not (0.0 <= finite(cfg.warmup, "--warmup") < 1.0):
        raise XincError(f"--warmup {cfg.warmup}: must be in [0, 1) ; e.g. 0.1")
    if not (0.0 <= finite(cfg.warmup_start, "--warmup-start") <= 1.0):
        raise XincError(f"--warmup-start {cfg.warmup_start}: must be in [0, 1] ; e.g. 0.1")
    _check_blocks(cfg)
    choice(cfg.act, "--act", ("gelu", "relu", "silu"))
    cfg.size = hw(cfg.size, "--size", allow_none=False)
    cfg.crop = hw(cfg.crop, "--crop")
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
        choice(cfg.dataset, "--dataset", dataset_names())
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


def _eval(model: NeRV, video: torch.Tensor) -> dict[str, Any]:
    pred = predict(model, None)
    ps = frame_psnrs(pred, video)
    return {"psnr": sum(ps["psnr_float"]) / len(ps["psnr_float"]),
            "psnr_8bit": sum(ps["psnr_8bit"]) / len(ps["psnr_8bit"]),
            "loss": float(F.mse_loss(pred, video)), "per_frame": ps}


def nerv_task(model: NeRV, video: torch.Tensor, cfg: TrainNeRVConfig) -> Task:
    """NeRV's part of the loop: one epoch per unit (seeded shuffle, consecutive pairs, lr set per step)."""
    T = video.shape[0]
    with torch.no_grad():
        emb = model.embed(list(range(T))).detach()  # the PE is fixed: encode every frame index once
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
    shuffle = torch.Generator().manual_seed(cfg.seed)
    spe = math.ceil(T / cfg.batch)

    def train_unit(epoch: int, log: Log) -> None:
        perm = torch.randperm(T, generator=shuffle).to(video.device)  # one host->device copy per epoch
        for i in range(spe):
            idx = perm[i * cfg.batch : (i + 1) * cfg.batch]
            lr = nerv_lr(cfg.lr, epoch, i, spe, cfg.epochs, cfg.warmup, cfg.warmup_start)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss = F.mse_loss(model.decode(emb[idx]), video[idx])
            loss.backward()
            opt.step()
            log(epoch * spe + i + 1, loss, lr)

    def extra(best: dict[str, Any], clock: Clock) -> dict[str, Any]:
        per_frame = best["per_frame"]
        return {"per_frame_psnr": per_frame["psnr_float"], "per_frame_psnr_8bit": per_frame["psnr_8bit"],
                "num_frames": T, "epochs": cfg.epochs, "s_per_epoch": clock.train / cfg.epochs}

    return Task(kind="nerv", model=model, optimizer=opt, train_unit=train_unit, evaluate=lambda m: _eval(m, video),
                num_pixels=T * video.shape[2] * video.shape[3], unit="epoch", alt="psnr_8bit", iters_per_unit=spe,
                rng=shuffle, extra_metrics=extra,
                psnr_definition="psnr: mean over frames of 10*log10(1/MSE) of the raw 0.5*tanh+0.5 output (NeRV "
                "convention); psnr_8bit: same after clamping to [0,1] and 8-bit rounding")


def _frames(frames: torch.Tensor, cfg: TrainNeRVConfig) -> torch.Tensor:
    """A (T, 3, H, W) tensor given from Python, checked against --size and cut to --frames."""
    video = frames.detach().to(torch.float32)
    if video.dim() != 4 or video.shape[1] != 3 or tuple(video.shape[2:]) != tuple(cfg.size):
        raise XincError(f"frames: expected a (T, 3, {cfg.size[0]}, {cfg.size[1]}) tensor, got {tuple(video.shape)}")
    return video[: cfg.frames] if cfg.frames else video


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
    nerv_model_config(cfg, 1)  # architecture errors before any data is read
    data = nerv_data_record(cfg, frames is not None)
    video = load_source(data) if frames is None else _frames(frames, cfg)
    T = int(video.shape[0])
    device = resolve_device(cfg.device)
    model_cfg = nerv_model_config(cfg, T)
    model = seeded_model(model_cfg, cfg.seed, device)
    job = make_job(cfg, model_cfg, device=device, data=data, units=cfg.epochs, desc="train nerv",
                   inputs=[cfg.root if cfg.dataset else cfg.video], num_frames=T, command=command,
                   optimizer="Adam(betas=(0.9, 0.999), eps=1e-8)", loss="L2 (MSE)",
                   lr_schedule=f"per iteration: {cfg.warmup:g} linear warm-up from {cfg.warmup_start:g}x, "
                   "then cosine to 0")
    return run(job, nerv_task(model, video.to(device), cfg), callback)
