"""`xinc train ffn`, `xinc train nerv` and `xinc reconstruct`."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import tyro
from PIL import Image

from xinc.cli.common import parse
from xinc.errors import XincError
from xinc.models import protocol
from xinc.utils import parse_hw


def _parse(cls, argv: list[str], prog: str):
    """Parse options (tyro's booleans: --resume, --no-progress); usage errors are one line."""
    return parse(cls, argv, prog)


def _command(prog: str, argv: list[str]) -> str:
    return " ".join([prog, *(shlex.quote(a) for a in argv)])


def _hw(text: str | None, flag: str) -> tuple[int, int] | None:
    return None if text in (None, "", "none", "None") else parse_hw(text, flag)


def _run(fn, argv: list[str], prog: str) -> int:
    try:
        return fn(argv, prog)
    except SystemExit as e:  # tyro: --help (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)


# ---------------------------------------------------------------- train ffn


@dataclass
class TrainFFNOptions:
    """Train the paper's FFN (Gaussian Fourier features + ReLU MLP) on one image.

    Defaults are the paper's: sigma 10, width 104, 3 layers, Adam 9e-4, 1000 full-image steps at
    128x256. Writes OUT/model.safetensors (best weights), OUT/config.json, OUT/metrics.json; the run
    lives in OUT.partial until it finishes (resume an interrupted run with --resume).
    Example: xinc train ffn --image frame.png --out runs/ffn
    """

    image: str
    """Image file to learn (PNG, JPEG, ...)."""
    out: str
    """Output folder (replaced atomically when the run finishes)."""
    size: str = "128x256"
    """HxW the image is resized to (bicubic)."""
    crop: str | None = None
    """Centre crop HxW applied before resizing (default: none)."""
    width: int = 104
    """Units per hidden layer (also the number of Fourier features unless --num-features)."""
    depth: int = 3
    """Number of linear layers."""
    sigma: float = 10.0
    """Standard deviation of the Gaussian Fourier matrix B."""
    num_features: int | None = None
    """Number of Fourier features L (default: = --width)."""
    encoding: str = "fourier"
    """Input encoding: fourier | none (raw coordinates, usual for SIREN)."""
    activation: str = "relu"
    """Hidden activation: relu | sine (SIREN) | gelu | tanh."""
    w0: float = 30.0
    """SIREN frequency of hidden layers (activation sine)."""
    w0_initial: float = 30.0
    """SIREN frequency of the first layer (activation sine)."""
    steps: int = 1000
    """Adam steps (each on the full image)."""
    lr: float = 9e-4
    """Constant learning rate."""
    seed: int = 0
    """Seed of B, the initial weights and everything else."""
    device: str = "auto"
    """auto | cpu | cuda[:i]."""
    eval_every: int = 100
    """Evaluate PSNR, keep the best weights and checkpoint every N steps."""
    log_every: int = 10
    """Refresh the progress bar's running PSNR every N steps."""
    resume: bool = False
    """Continue an interrupted run from OUT.partial (same options)."""
    overwrite: bool = False
    """Replace OUT when it is an earlier xinc output (a folder xinc did not write is never replaced)."""
    progress: bool = True
    """Show a progress bar on stderr (--no-progress to hide)."""


def ffn_config(o: TrainFFNOptions):
    """The library's TrainFFNConfig for parsed CLI options."""
    from xinc.train.ffn import TrainFFNConfig

    return TrainFFNConfig(
        image=o.image, out=o.out, size=parse_hw(o.size, "--size"), crop=_hw(o.crop, "--crop"), hidden=o.width,
        layers=o.depth, encoding=o.encoding, sigma=o.sigma, num_features=o.num_features, activation=o.activation,
        w0=o.w0, w0_initial=o.w0_initial, steps=o.steps, lr=o.lr, seed=o.seed, device=o.device,
        eval_every=o.eval_every, log_every=o.log_every, resume=o.resume, progress=o.progress,
        overwrite=o.overwrite,
    )


def _train_ffn(argv: list[str], prog: str) -> int:
    from xinc.train.ffn import train_ffn

    o = _parse(TrainFFNOptions, argv, prog)
    res = train_ffn(ffn_config(o), command=_command(prog, argv))
    m = res.metrics
    print(f"{res.out_dir}: best PSNR {m['best_psnr']:.2f} dB at step {m['best_step']} "
          f"(8-bit weights {m['psnr_8bit_weights']:.2f} dB), {m['num_params']:,} parameters, "
          f"{m['bpp_32bit']:.3f} bpp (32-bit) / {m['bpp_8bit']:.3f} bpp (8-bit), {m['wall_time_s']:.1f} s")
    return 0


def train_ffn(argv: list[str], prog: str) -> int:
    """CLI entry: `xinc train ffn`."""
    return _run(_train_ffn, argv, prog)


# ---------------------------------------------------------------- train nerv


@dataclass
class TrainNeRVOptions:
    """Train the paper's NeRV (frame-index positional encoding -> PixelShuffle conv decoder) on one video.

    Defaults are the paper's: pe_1.25_80, strides 4 2 2, kernels 3, reduce 1.2, lower width 6,
    model size 1.0M (978,557 parameters at 128x256), GELU, L2 loss, Adam peak 1e-3 with 10 % warm-up
    from 0.1x then cosine to 0 (set every iteration), batch 2, 1000 epochs. Writes OUT/model.safetensors
    (best weights), OUT/config.json, OUT/metrics.json; the run lives in OUT.partial until it finishes.
    Examples: xinc train nerv --video frames/ --out runs/nerv --frames 30 --crop 320x640
              xinc train nerv --dataset vipseg --root VIPSeg_720P --video 12_n-ytHkMceew --out runs/v
    """

    video: str
    """Frame folder or video file (mp4, ...); with --dataset, the clip id."""
    out: str
    """Output folder (replaced atomically when the run finishes)."""
    dataset: str | None = None
    """cityscapes-vps | vipseg: train on all frames of clip --video under --root."""
    root: str | None = None
    """Dataset root folder (with --dataset)."""
    size: str = "128x256"
    """HxW frames are resized to (bicubic)."""
    crop: str | None = None
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
    """Refresh the progress bar's running PSNR every N steps."""
    resume: bool = False
    """Continue an interrupted run from OUT.partial (same options)."""
    overwrite: bool = False
    """Replace OUT when it is an earlier xinc output (a folder xinc did not write is never replaced)."""
    progress: bool = True
    """Show a progress bar on stderr (--no-progress to hide)."""


def nerv_config(o: TrainNeRVOptions):
    """The library's TrainNeRVConfig for parsed CLI options."""
    from xinc.train.nerv import TrainNeRVConfig

    names = {f.name for f in fields(TrainNeRVConfig)}
    kw = {k: getattr(o, k) for k in names if hasattr(o, k)}
    kw.update(size=parse_hw(o.size, "--size"), crop=_hw(o.crop, "--crop"))
    return TrainNeRVConfig(**kw)


def _train_nerv(argv: list[str], prog: str) -> int:
    from xinc.train.nerv import train_nerv

    o = _parse(TrainNeRVOptions, argv, prog)
    res = train_nerv(nerv_config(o), command=_command(prog, argv))
    m = res.metrics
    print(f"{res.out_dir}: best PSNR {m['best_psnr']:.2f} dB at epoch {m['best_epoch']} "
          f"(8-bit weights {m['psnr_8bit_weights']:.2f} dB), {m['num_params']:,} parameters, "
          f"{m['bpp_32bit']:.3f} bpp (32-bit) / {m['bpp_8bit']:.3f} bpp (8-bit), {m['wall_time_s']:.1f} s")
    return 0


def train_nerv(argv: list[str], prog: str) -> int:
    """CLI entry: `xinc train nerv`."""
    return _run(_train_nerv, argv, prog)


# ---------------------------------------------------------------- reconstruct


@dataclass
class ReconstructOptions:
    """Decode frames of a model directory to PNGs named by zero-padded frame index (0000.png, ...).

    When the model directory records its training data (or --gt is given) it also prints and writes
    the PSNR of every frame against the ground truth (OUT/psnr.json).
    Example: xinc reconstruct runs/nerv --out runs/nerv_frames --frames 0,11,22
    """

    model_dir: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="MODEL_DIR")]
    """Model directory from `xinc train` or `xinc import`."""
    out: str
    """Output folder of the PNGs (replaced atomically)."""
    frames: str | None = None
    """Frame indices, e.g. 0,11,22 or 0-5 (default: all)."""
    gt: str | None = None
    """Ground truth (image, frame folder or video) to compare with, instead of the recorded data source."""
    device: str = "auto"
    """auto | cpu | cuda[:i]."""
    batch: int = 8
    """Frames decoded at once."""
    overwrite: bool = False
    """Replace OUT when it is an earlier xinc output (a folder xinc did not write is never replaced)."""


def _reconstruct(argv: list[str], prog: str) -> int:
    from xinc.models.io import load_model, read_model_dir_config
    from xinc.outputs import owned_output
    from xinc.train.common import check_out, check_positive, frame_psnrs, load_source, predict
    from xinc.train.metrics import to_uint8
    from xinc.utils import parse_index_list, resolve_device, write_json
    from xinc.validate import path_out

    o = _parse(ReconstructOptions, argv, prog)
    check_positive(o.batch, "--batch", integer=True)
    out = check_out(o.out)
    inputs = [o.model_dir, o.gt]
    path_out(out, inputs=inputs, overwrite=o.overwrite)
    device = resolve_device(o.device)
    model = load_model(o.model_dir, device)
    cfg = read_model_dir_config(o.model_dir)
    T = protocol.frames(model)
    idx = parse_index_list(o.frames, T)
    gt, gt_source = _ground_truth(o.gt, cfg, model, idx, load_source)
    if gt is not None and not protocol.takes_frames(model):
        gt = gt.clamp(0.0, 1.0)  # the FFN was fitted to the clamped image (xinc.train.ffn.load_ffn_target)
    with torch.no_grad():
        pred = predict(model, idx, o.batch).cpu()
    digits = max(4, len(str(T - 1)))
    psnrs = frame_psnrs(pred, gt) if gt is not None else None
    with owned_output(out, inputs=inputs, overwrite=o.overwrite, kind="reconstruct") as stage:
        for j, i in enumerate(idx):
            arr = to_uint8(pred[j]).permute(1, 2, 0).numpy()
            Image.fromarray(np.ascontiguousarray(arr)).save(stage / f"{i:0{digits}d}.png")
        write_json(stage / "config.json", {"model_dir": str(Path(o.model_dir).resolve()), "frames": idx,
                                           "gt": gt_source, "command": _command(prog, argv)})
        if psnrs is not None:
            summary = {
                "gt": gt_source,
                "frames": idx,
                "psnr_float": psnrs["psnr_float"],
                "psnr_8bit": psnrs["psnr_8bit"],
                "mean_psnr_float": float(np.mean(psnrs["psnr_float"])),
                "mean_psnr_8bit": float(np.mean(psnrs["psnr_8bit"])),
                "definition": "per frame 10*log10(1/MSE) vs ground truth, then the mean; float = raw output, "
                "8bit = clamped and rounded (the PNGs)",
            }
            write_json(stage / "psnr.json", summary)
    print(f"{out}: wrote {len(idx)} PNG(s)")
    if psnrs is not None:
        for i, pf, p8 in zip(idx, psnrs["psnr_float"], psnrs["psnr_8bit"]):
            print(f"frame {i:0{digits}d}: PSNR {pf:.3f} dB (float) {p8:.3f} dB (8-bit)")
        print(f"mean PSNR {np.mean(psnrs['psnr_float']):.3f} dB (float) {np.mean(psnrs['psnr_8bit']):.3f} dB (8-bit)")
    return 0


def _ground_truth(gt_arg, cfg, model, idx, load_source):
    """Ground-truth frames for `idx` at the model's size, from --gt or the recorded training data."""
    from xinc.data.frames import load_frames

    H, W = model.config.height, model.config.width
    data = (cfg.get("train") or cfg.get("import") or {}).get("data")  # imported models record it under "import"
    if gt_arg:
        from xinc.data.frames import VIDEO_SUFFIXES

        crop = tuple(data["crop"]) if data and data.get("crop") else None
        if data and data.get("frame_files") and Path(gt_arg).is_dir():  # imported models: match by file number
            from xinc.models.importers.evaluate import numbered_frames

            return numbered_frames(gt_arg, idx, crop, (H, W)), str(gt_arg)
        many = Path(gt_arg).is_dir() or Path(gt_arg).suffix.lower() in VIDEO_SUFFIXES
        frames = load_frames(gt_arg, crop, (H, W), idx if many else None)
        if frames.shape[0] != len(idx):
            raise XincError(f"{gt_arg}: holds {frames.shape[0]} frame(s) but {len(idx)} are reconstructed; "
                            "pass --frames to match")
        return frames, str(gt_arg)
    if not data or data.get("kind") not in ("image", "video", "dataset"):
        return None, None
    frames = load_source(data)
    if max(idx) >= frames.shape[0]:
        raise XincError(f"recorded data source has {frames.shape[0]} frames; frame {max(idx)} is outside it")
    if tuple(frames.shape[-2:]) != (H, W):
        raise XincError(f"recorded data source gives {tuple(frames.shape[-2:])} frames, the model makes {(H, W)}")
    return frames[idx], data.get("src") or f"{data.get('dataset')}:{data.get('video')}"


def reconstruct(argv: list[str], prog: str) -> int:
    """CLI entry: `xinc reconstruct`."""
    return _run(_reconstruct, argv, prog)


__all__ = ["train_ffn", "train_nerv", "reconstruct", "TrainFFNOptions", "TrainNeRVOptions", "ReconstructOptions"]
