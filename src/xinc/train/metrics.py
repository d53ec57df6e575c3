"""Reconstruction quality and size metrics: PSNR (float and 8-bit), bits per pixel."""

from __future__ import annotations

import torch


def mse_per_frame(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each frame of (T, C, H, W) tensors (or one (C, H, W) frame) as float64 (T,)."""
    if pred.dim() == 3:
        pred, target = pred[None], target[None]
    diff = pred.detach().to(torch.float64) - target.detach().to(torch.float64)
    return diff.pow(2).flatten(1).mean(dim=1)


def psnr_from_mse(mse: torch.Tensor | float, peak: float = 1.0) -> torch.Tensor:
    """PSNR = 10*log10(peak^2 / MSE) in dB (infinite for a perfect match)."""
    mse = torch.as_tensor(mse, dtype=torch.float64)
    return 10.0 * torch.log10(peak**2 / mse)


def to_8bit(x: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to the 256 levels of an 8-bit image (result stays in [0, 1])."""
    return torch.round(x.clamp(0.0, 1.0) * 255.0) / 255.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] floats to uint8 as floor(x·255 + 0.5), the rounding of torchvision's save_image (half up)."""
    return torch.floor(x.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)


def psnr_float(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-frame PSNR of the raw (unclamped) output; NeRV's published definition."""
    return psnr_from_mse(mse_per_frame(pred, target))


def psnr_8bit(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-frame PSNR after clamping to [0, 1] and 8-bit rounding (SPEC 1.1; what a saved PNG holds)."""
    return psnr_from_mse(mse_per_frame(to_8bit(pred), target))


def mean_psnr(per_frame: torch.Tensor) -> float:
    """Average of per-frame PSNRs (the video convention: PSNR per frame, then the mean)."""
    return float(per_frame.mean())


def bits_per_pixel(num_bits: float, num_pixels: int) -> float:
    """Model size in bits divided by the pixels it represents (all frames, H*W each)."""
    return float(num_bits) / float(num_pixels)
