"""Fit the paper's FFN (Fourier features + MLP) to one image: full image per step, Adam, constant lr."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from xinc import __version__
from xinc.errors import XincError
from xinc.models.ffn import ACTIVATIONS, FFN, FFNConfig
from xinc.models.io import build_model, load_model, save_model
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
    load_source,
    note,
    prepare_stage,
    progress_bar,
    save_checkpoint,
    save_metrics,
)
from xinc.train.metrics import bits_per_pixel, psnr_8bit, psnr_float
from xinc.train.quant import num_params, quantize_model
from xinc.utils import resolve_device, seed_everything, to_jsonable
from xinc.validate import alloc, path_out


@dataclass
class TrainFFNConfig:
    """Every hyper-parameter of an FFN fit (defaults = the paper: sigma 10, width 104, 3 layers, 1000 steps)."""

    image: str | None = None  # image file the FFN learns (or pass `target=` to train_ffn)
    out: str | None = None  # output folder (staged in <out>.partial until finished)
    size: tuple[int, int] = (128, 256)  # (H, W) the image is resized to (bicubic)
    crop: tuple[int, int] | None = None  # centre crop (h, w) before resizing
    hidden: int = 104  # units per hidden layer (= number of Fourier features unless num_features)
    layers: int = 3  # linear layers
    encoding: str = "fourier"  # fourier | none (raw coordinates, e.g. for SIREN)
    sigma: float = 10.0  # std of the Gaussian Fourier matrix B
    num_features: int | None = None  # Fourier features L (None = hidden)
    activation: str = "relu"  # relu | sine (SIREN) | gelu | tanh
    w0: float = 30.0  # SIREN frequency of hidden layers
    w0_initial: float = 30.0  # SIREN frequency of the first layer
    steps: int = 1000  # Adam steps, each on the full image
    lr: float = 9e-4  # constant Adam learning rate
    seed: int = 0  # seeds B, the initial weights and everything else
    device: str = "auto"  # auto | cpu | cuda[:i]
    eval_every: int = 100  # evaluate PSNR, keep the best weights and checkpoint every N steps
    log_every: int = 10  # refresh the progress bar's running PSNR every N steps (one host sync each)
    resume: bool = False  # continue an interrupted run from <out>.partial
    overwrite: bool = False  # replace an earlier xinc output in <out> (never a folder xinc did not write)
    progress: bool = True  # show a progress bar on stderr


def validate_ffn_config(cfg: TrainFFNConfig) -> None:
    """Reject out-of-range options with one clear line (before anything is written)."""
    check_out(cfg.out)
    path_out(cfg.out, inputs=[cfg.image], overwrite=cfg.overwrite or cfg.resume)
    for flag, v in (("--steps", cfg.steps), ("--eval-every", cfg.eval_every), ("--log-every", cfg.log_every),
                    ("--width", cfg.hidden), ("--depth", cfg.layers)):
        check_positive(v, flag, integer=True)
    if cfg.num_features is not None:
        check_positive(cfg.num_features, "--num-features", integer=True)
    for flag, v in (("--lr", cfg.lr), ("--sigma", cfg.sigma), ("--w0", cfg.w0), ("--w0-initial", cfg.w0_initial)):
        check_positive(v, flag)
    check_choice(cfg.activation, "--activation", ACTIVATIONS)
    check_choice(cfg.encoding, "--encoding", ("fourier", "none"))
    check_hw(cfg.size, "--size")
    check_hw(cfg.crop, "--crop")
    feats = cfg.num_features or cfg.hidden  # full-image steps: features + every layer's activations, x3 (grad, Adam)
    alloc(12.0 * cfg.size[0] * cfg.size[1] * (2 * feats + cfg.hidden * cfg.layers), f"--size {cfg.size[0]}x"
          f"{cfg.size[1]} with --width {cfg.hidden}", "choose a smaller --size or --width")


def ffn_data_record(cfg: TrainFFNConfig, from_tensor: bool) -> dict[str, Any]:
    """The data source as recorded in config.json (enough for `xinc reconstruct` to find the ground truth)."""
    if from_tensor:
        return {"kind": "tensor", "src": None, "crop": cfg.crop, "size": list(cfg.size), "frames": 1}
    return {"kind": "image", "src": str(Path(cfg.image).resolve()), "crop": cfg.crop, "size": list(cfg.size),
            "frames": 1}


def load_ffn_target(data: dict[str, Any]) -> torch.Tensor:
    """The training image as (3, H, W) in [0, 1] (clamped: bicubic resizing can overshoot slightly)."""
    frames = load_source(data)
    if frames.shape[0] != 1:
        raise XincError(f"{data['src']}: an FFN learns one image but the source holds {frames.shape[0]} frames")
    return frames[0].clamp(0.0, 1.0)


def mlp(model: FFN, h: torch.Tensor) -> torch.Tensor:
    """The FFN's linear layers and activations applied to already-encoded inputs (P, n)."""
    for i, layer in enumerate(model.layers):
        h = model.activation(i, layer(h))
    return h


def _eval(model: FFN, feats: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        out = mlp(model, feats)
        pred = out.t().reshape(target.shape)
        mse = float(F.mse_loss(pred, target))
        return {"psnr": float(psnr_8bit(pred, target)[0]), "psnr_float": float(psnr_float(pred, target)[0]),
                "loss": mse}


def train_ffn(
    config: TrainFFNConfig,
    *,
    target: torch.Tensor | None = None,
    command: str | None = None,
    callback: Callable[[int, dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Fit an FFN to `config.image` (or the (3, H, W) `target`); write <out>/ and return it with its metrics.

    `callback(step, eval_record)` runs after every evaluation and checkpoint (raising there
    interrupts the run; it can then be resumed with `resume=True`).
    """
    cfg = config
    validate_ffn_config(cfg)
    out = check_out(cfg.out)
    if target is None and not cfg.image:
        raise XincError("--image: an image file is required")
    data = ffn_data_record(cfg, target is not None)
    if target is None:
        img = load_ffn_target(data)
    else:
        img = target.detach().to(torch.float32)
        if img.dim() == 4 and img.shape[0] == 1:
            img = img[0]
        if img.dim() != 3 or img.shape[0] != 3 or tuple(img.shape[1:]) != tuple(cfg.size):
            raise XincError(f"target: expected a (3, {cfg.size[0]}, {cfg.size[1]}) tensor, got {tuple(img.shape)}")
    device = resolve_device(cfg.device)
    H, W = cfg.size
    model_cfg = FFNConfig(height=H, width=W, hidden=cfg.hidden, layers=cfg.layers, encoding=cfg.encoding,
                          sigma=cfg.sigma, num_features=cfg.num_features, activation=cfg.activation, w0=cfg.w0,
                          w0_initial=cfg.w0_initial)
    gen = seed_everything(cfg.seed)
    model = build_model(model_cfg, gen).to(device)
    train_section = {**to_jsonable(cfg), "out": str(out), "device": str(device), "data": data,
                     "command": command, "optimizer": "Adam(betas=(0.9, 0.999), eps=1e-8)", "loss": "MSE"}
    run_config = {"xinc_version": __version__, "model": to_jsonable(model_cfg), "train": train_section}

    if cfg.resume and (done := finished_run(out, run_config)) is not None:
        note(f"{out}: this run already finished; nothing to resume")
        return TrainResult(out_dir=out, metrics=done, model=load_model(out, device))
    with owned_output(out, inputs=[cfg.image], overwrite=cfg.overwrite, resume=True,
                      kind="train") as stage:
        try:
            metrics = _fit(model, img.to(device), cfg, stage, run_config, callback)
        except KeyboardInterrupt:
            note(f"interrupted; the run is kept in {stage}; rerun the same command with --resume to continue")
            raise
    return TrainResult(out_dir=out, metrics=metrics, model=model)


def _fit(model: FFN, target: torch.Tensor, cfg: TrainFFNConfig, stage: Path, run_config: dict[str, Any],
         callback) -> dict[str, Any]:
    device = target.device
    ckpt = prepare_stage(stage, run_config, cfg.resume)
    feats = model.encode(model.coords(device)).detach().contiguous()  # B is fixed: encode the grid once
    y = target.reshape(3, -1).t().contiguous()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    if ckpt is None:
        step, evals, resumed = 0, [], False
        best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        initial = _eval(model, feats, target)
        best_psnr, best_step = float("-inf"), 0
        clock = Clock()
    else:
        model.load_state_dict(ckpt.weights)
        opt.load_state_dict(ckpt.state["optimizer"])
        p = ckpt.progress
        step, evals, best_psnr, best_step, initial = p["step"], p["evals"], p["best_psnr"], p["best_step"], p["initial"]
        best_state, resumed = ckpt.best, True
        clock = Clock(p["wall_time_s"], p["train_time_s"])

    bar = progress_bar(cfg.steps, step, cfg.progress, "train ffn")
    loss = None
    clock.start_training()
    while step < cfg.steps:
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(mlp(model, feats), y)
        loss.backward()
        opt.step()
        step += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            bar.update(step - bar.n)
            bar.set_postfix_str(f"psnr {float(-10 * torch.log10(loss.detach())):.2f} dB", refresh=False)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            clock.stop_training()
            rec = {"step": step, **_eval(model, feats, target)}
            evals.append(rec)
            if rec["psnr"] > best_psnr:
                best_psnr, best_step = rec["psnr"], step
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            progress = {"evals": evals, "best_psnr": best_psnr, "best_step": best_step, "initial": initial,
                        "wall_time_s": clock.wall, "train_time_s": clock.train}
            save_checkpoint(stage, step, model, best_state, opt, progress)
            if callback is not None:
                callback(step, rec)
            clock.start_training()
    clock.stop_training()
    bar.close()

    final = evals[-1]
    model.load_state_dict(best_state)
    best = _eval(model, feats, target)
    qmodel, qbits = quantize_model(model)
    quant = _eval(qmodel, feats, target)
    n = num_params(model)
    pixels = target.shape[1] * target.shape[2]
    metrics = {
        "kind": "ffn",
        "psnr_definition": "psnr: 10*log10(1/MSE) after clamping to [0,1] and 8-bit rounding (SPEC 1.1); "
        "psnr_float: same on the raw output",
        "evals": evals,
        "psnr": [e["psnr"] for e in evals],
        "initial_psnr": initial["psnr"],
        "best_psnr": best["psnr"],
        "best_psnr_float": best["psnr_float"],
        "best_step": best_step,
        "final_psnr": final["psnr"],
        "final_psnr_float": final["psnr_float"],
        "num_params": n,
        "num_pixels": pixels,
        "bpp_32bit": bits_per_pixel(32 * n, pixels),
        "bpp_8bit": bits_per_pixel(qbits, pixels),
        "quant_8bit": {"psnr": quant["psnr"], "psnr_float": quant["psnr_float"], "bits": qbits,
                       "scheme": "per-row affine min/scale, 8-bit codes; row min and scale as float32 counted"},
        "psnr_8bit_weights": quant["psnr"],
        "steps": cfg.steps,
        "wall_time_s": clock.wall,
        "train_time_s": clock.train,
        "steps_per_s": cfg.steps / clock.train if clock.train > 0 else None,
        "resumed": resumed,
        "device": str(device),
    }
    save_model(model, stage, extra={"train": run_config["train"]})
    save_metrics(stage, metrics)
    finish_stage(stage)
    return metrics
