"""8-bit weight quantisation: per-row affine (min + scale * q), dequantised back to float32.

Every tensor with two or more dimensions is quantised per output row (axis 0), vectors per
tensor; each row stores its float32 `min` and `scale`, and those bits are counted.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class QuantizedTensor:
    """q (uint8 codes), min and scale (float32, one per row) of one weight tensor."""

    q: torch.Tensor
    min: torch.Tensor
    scale: torch.Tensor
    shape: tuple[int, ...]

    @property
    def num_bits(self) -> int:
        return 8 * self.q.numel() + 32 * (self.min.numel() + self.scale.numel())

    def dequantize(self) -> torch.Tensor:
        return (self.min + self.scale * self.q.to(torch.float32)).reshape(self.shape)


def quantize_tensor(w: torch.Tensor, bits: int = 8) -> QuantizedTensor:
    """Affine min-max quantisation to 2**bits levels, per row for matrices/kernels, per tensor for vectors."""
    w32 = w.detach().to(torch.float32)
    rows = w32.reshape(w32.shape[0], -1) if w32.dim() >= 2 else w32.reshape(1, -1)
    lo = rows.min(dim=1, keepdim=True).values
    hi = rows.max(dim=1, keepdim=True).values
    levels = 2**bits - 1
    scale = (hi - lo) / levels
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # constant rows: q = 0, value = min
    q = torch.round((rows - lo) / scale).clamp(0, levels).to(torch.uint8 if bits <= 8 else torch.int32)
    return QuantizedTensor(q=q, min=lo, scale=scale, shape=tuple(w32.shape))


def quantize_model(model: nn.Module, bits: int = 8) -> tuple[nn.Module, int]:
    """A copy of `model` whose parameters are replaced by their dequantised 8-bit values, and their total bits.

    Buffers (Fourier matrix B, PE bases) stay in float: they are fixed by the seed, not learned weights.
    """
    qmodel = copy.deepcopy(model)
    total = 0
    with torch.no_grad():
        for p in qmodel.parameters():
            qt = quantize_tensor(p, bits)
            total += qt.num_bits
            p.copy_(qt.dequantize().to(p.dtype))
    return qmodel, total


def num_params(model: nn.Module) -> int:
    """Learned parameters (buffers such as the Fourier matrix B are not counted)."""
    return sum(p.numel() for p in model.parameters())
