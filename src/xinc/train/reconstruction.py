"""Decode frames of a model directory to 8-bit PNGs, with the PSNR against the ground truth when it is known."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import tyro
from PIL import Image

from xinc.errors import XincError
from xinc.models import protocol
from xinc.train.common import check_out, frame_psnrs, load_source, predict
from xinc.validate import path_out, positive_int


@dataclass
class ReconstructConfig:
    """Decode frames of a model directory to PNGs named by zero-padded frame index (0000.png, ...).

    When the model directory records its training data (or --gt is given) it also prints and writes
    the PSNR of every frame against the ground truth (OUT/psnr.json).
    Example: xinc reconstruct runs/nerv --out runs/nerv_frames --frames 0,11,22
    """

    model_dir: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="MODEL_DIR")]
    """Model directory from `xinc train` or `xinc import`."""
    out: Annotated[str | None, tyro.conf.arg(metavar="PATH", help_behavior_hint="(required)")] = None
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


@dataclass
class ReconstructResult:
    """What `reconstruct` wrote: the folder, the frame indices, and per-frame PSNRs (None without ground truth)."""

    out_dir: Path
    frames: list[int]
    num_frames: int  # frames the model holds (sets the zero-padding of file names)
    psnr: dict[str, Any] | None = field(default=None)


def validate_reconstruct_config(cfg: ReconstructConfig) -> Path:
    """One-line errors for bad options before anything is read or written; returns the output folder."""
    positive_int(cfg.batch, "--batch")
    out = check_out(cfg.out)
    path_out(out, inputs=[cfg.model_dir, cfg.gt], overwrite=cfg.overwrite)
    return out


def reconstruct(cfg: ReconstructConfig, *, command: str | None = None) -> ReconstructResult:
    """Write OUT/<index>.png for the selected frames (+ config.json, and psnr.json when the ground truth is known)."""
    from xinc.models.io import load_model, read_model_dir_config
    from xinc.outputs import owned_output
    from xinc.utils import parse_index_list, resolve_device, write_json

    out = validate_reconstruct_config(cfg)
    model = load_model(cfg.model_dir, resolve_device(cfg.device))
    T = protocol.frames(model)
    idx = parse_index_list(cfg.frames, T)
    gt, gt_source = ground_truth(cfg.gt, read_model_dir_config(cfg.model_dir), model, idx)
    if gt is not None and not protocol.takes_frames(model):
        gt = gt.clamp(0.0, 1.0)  # the FFN was fitted to the clamped image (xinc.train.ffn.load_ffn_target)
    with torch.no_grad():
        pred = predict(model, idx, cfg.batch).cpu()
    psnrs = frame_psnrs(pred, gt) if gt is not None else None
    summary = _psnr_summary(psnrs, idx, gt_source) if psnrs is not None else None
    with owned_output(out, inputs=[cfg.model_dir, cfg.gt], overwrite=cfg.overwrite, kind="reconstruct") as stage:
        write_pngs(stage, pred, idx, T)
        write_json(stage / "config.json", {"model_dir": str(Path(cfg.model_dir).resolve()), "frames": idx,
                                           "gt": gt_source, "command": command})
        if summary is not None:
            write_json(stage / "psnr.json", summary)
    return ReconstructResult(out_dir=out, frames=idx, num_frames=T, psnr=summary)


def frame_digits(num_frames: int) -> int:
    """Zero-padding of frame file names: at least 4 digits, enough for the last index."""
    return max(4, len(str(num_frames - 1)))


def write_pngs(folder: Path, pred: torch.Tensor, idx: list[int], num_frames: int) -> None:
    """Frames (N, 3, H, W) in [0, 1] as 8-bit PNGs named by their index (rounded like torchvision's save_image)."""
    from xinc.train.metrics import to_uint8

    digits = frame_digits(num_frames)
    for j, i in enumerate(idx):
        arr = to_uint8(pred[j]).permute(1, 2, 0).numpy()
        Image.fromarray(np.ascontiguousarray(arr)).save(folder / f"{i:0{digits}d}.png")


def _psnr_summary(psnrs: dict[str, list[float]], idx: list[int], gt_source: str | None) -> dict[str, Any]:
    return {
        "gt": gt_source,
        "frames": idx,
        "psnr_float": psnrs["psnr_float"],
        "psnr_8bit": psnrs["psnr_8bit"],
        "mean_psnr_float": float(np.mean(psnrs["psnr_float"])),
        "mean_psnr_8bit": float(np.mean(psnrs["psnr_8bit"])),
        "definition": "per frame 10*log10(1/MSE) vs ground truth, then the mean; float = raw output, "
        "8bit = clamped and rounded (the PNGs)",
    }


def ground_truth(gt_arg: str | None, cfg: dict[str, Any], model, idx: list[int]):
    """Ground-truth frames for `idx` at the model's size, from `gt_arg` or the recorded training data, and its name."""
    H, W = model.config.height, model.config.width
    data = (cfg.get("train") or cfg.get("import") or {}).get("data")  # imported models record it under "import"
    if gt_arg:
        return _given_ground_truth(gt_arg, data, idx, (H, W)), str(gt_arg)
    if not data or data.get("kind") not in ("image", "video", "dataset"):
        return None, None
    frames = load_source(data)
    if max(idx) >= frames.shape[0]:
        raise XincError(f"recorded data source has {frames.shape[0]} frames; frame {max(idx)} is outside it")
    if tuple(frames.shape[-2:]) != (H, W):
        raise XincError(f"recorded data source gives {tuple(frames.shape[-2:])} frames, the model makes {(H, W)}")
    return frames[idx], data.get("src") or f"{data.get('dataset')}:{data.get('video')}"


def _given_ground_truth(gt_arg: str, data: dict[str, Any] | None, idx: list[int], size: tuple[int, int]):
    """Frames `idx` of an explicit --gt source (image, frame folder or video), cropped as the training data was."""
    from xinc.data.frames import VIDEO_SUFFIXES, load_frames

    crop = tuple(data["crop"]) if data and data.get("crop") else None
    if data and data.get("frame_files") and Path(gt_arg).is_dir():  # imported models: match by file number
        from xinc.models.importers.evaluate import numbered_frames

        return numbered_frames(gt_arg, idx, crop, size)
    many = Path(gt_arg).is_dir() or Path(gt_arg).suffix.lower() in VIDEO_SUFFIXES
    frames = load_frames(gt_arg, crop, size, idx if many else None)
    if frames.shape[0] != len(idx):
        raise XincError(f"{gt_arg}: holds {frames.shape[0]} frame(s) but {len(idx)} are reconstructed; "
                        "pass --frames to match")
    return frames
