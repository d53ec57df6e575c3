"""PSNR of an imported video model against ground-truth frames (where the ground truth exists)."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import torch

from xinc.data.frames import list_frame_files, load_frames
from xinc.errors import XincError
from xinc.models.nerv import NeRV


def frame_files_by_index(folder: str | Path, first_number: int = 1) -> dict[int, Path]:
    """Model frame index -> file for folders named like 0001.png (frame k is file k + first_number)."""
    out: dict[int, Path] = {}
    for p in list_frame_files(folder):
        m = re.search(r"(\d+)$", p.stem)
        if m:
            out[int(m.group(1)) - first_number] = p
    if not out:
        raise XincError(f"{folder}: no numbered frame files (e.g. 0001.png) to match frames by number")
    return out


def psnr(out: torch.Tensor, gt: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Per-frame PSNR in dB for (B, 3, H, W) tensors in [0, 1]: -10 log10(mse + eps)."""
    mse = ((out.double() - gt.double()) ** 2).flatten(1).mean(1)
    return -10.0 * torch.log10(mse + eps)


@torch.no_grad()
def video_psnr(model: NeRV, gt: str | Path, *, crop: list[int] | None, frames: list[int] | None = None,
               by_number: bool = True, first_number: int = 1, eps: float = 0.0,
               batch: int | None = None) -> dict[str, Any]:
    """Decode model frames and compare with ground truth; frames are matched by file number when `by_number`."""
    gt = Path(gt)
    T = model.config.num_frames
    size = (model.config.height, model.config.width)
    if gt.is_dir() and by_number:
        files = frame_files_by_index(gt, first_number)
        idx = sorted(k for k in files if 0 <= k < T) if frames is None else list(frames)
        missing = [k for k in idx if k not in files]
        if missing or not idx:
            raise XincError(f"{gt}: no ground-truth file for model frame {missing[0] if missing else 0} "
                            f"(expected {missing[0] + first_number if missing else first_number:04d}.*)")
        order = {f: j for j, f in enumerate(list_frame_files(gt))}
        positions = {k: order[files[k]] for k in idx}
    else:
        idx = list(range(T)) if frames is None else list(frames)
        positions = {k: k for k in idx}
    batch = batch or max(1, min(16, 2_000_000 // (size[0] * size[1])))  # small frames in batches
    fast = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)  # ~2.5x faster CPU convs
    per_frame: list[float] = []
    lo, hi = math.inf, -math.inf
    for start in range(0, len(idx), batch):
        ks = idx[start : start + batch]
        target = load_frames(gt, crop=tuple(crop) if crop else None, size=size, frames=[positions[k] for k in ks])
        if tuple(target.shape[-2:]) != size:
            raise XincError(f"{gt}: ground truth is {tuple(target.shape[-2:])} after the crop, model is {size}")
        out = fast(ks)
        lo, hi = min(lo, float(out.min())), max(hi, float(out.max()))
        per_frame += psnr(out, target, eps).tolist()
    return {
        "frames": idx,
        "per_frame_psnr_db": per_frame,
        "mean_psnr_db": sum(per_frame) / len(per_frame),
        "ground_truth": str(gt.resolve()),
        "crop": crop,
        "size": list(size),
        "psnr_definition": f"-10*log10(mse + {eps:g}) per frame on the unclamped float output, averaged",
        "output_range": [lo, hi],
    }


def numbered_frames(folder: str | Path, frames: list[int], crop: list[int] | tuple[int, int] | None,
                    size: tuple[int, int], first_number: int = 1) -> torch.Tensor:
    """Ground truth of model frames `frames` from a folder of numbered files (frame k <-> number k + first_number).

    Works for sparse folders such as bunny_720p_every11 (0001.png, 0012.png, ...), where position != frame.
    """
    files = frame_files_by_index(folder, first_number)
    missing = [k for k in frames if k not in files]
    if missing:
        raise XincError(f"{folder}: no ground-truth file for frame {missing[0]} (expected number "
                        f"{missing[0] + first_number:04d}); pass --frames with frames the folder holds, e.g. "
                        f"{','.join(str(k) for k in sorted(files)[:4])}")
    order = {f: j for j, f in enumerate(list_frame_files(folder))}
    return load_frames(folder, crop=tuple(crop) if crop else None, size=size, frames=[order[files[k]] for k in frames])
