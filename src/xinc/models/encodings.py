"""Input encodings of the INRs: pixel coordinates, Gaussian Fourier features, NeRV's frame-index PE."""

from __future__ import annotations

import math

import torch
from torch import nn


def pixel_coords(height: int, width: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(H*W, 2) float32 (row, col) coordinates in row-major order, v = 2*(idx/(max(H,W)-1) - 0.5).

    The aspect ratio is kept: for 128x256 rows span [-1, -0.0039] and columns [-1, 1] (SPEC 1.1).
    """
    scale = max(height, width) - 1
    rows = torch.arange(height, dtype=torch.float32, device=device)
    cols = torch.arange(width, dtype=torch.float32, device=device)
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).reshape(-1, 2)
    return 2.0 * (grid / scale - 0.5)


class FourierFeatures(nn.Module):
    """gamma(v) = [sin(2*pi*v B^T), cos(2*pi*v B^T)]: all L sines first, then all L cosines."""

    def __init__(self, in_dim: int, num_features: int, sigma: float, generator: torch.Generator | None = None):
        super().__init__()
        self.register_buffer("B", torch.randn(num_features, in_dim, generator=generator) * sigma)

    @property
    def out_dim(self) -> int:
        return 2 * self.B.shape[0]

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        proj = 2 * math.pi * v @ self.B.t()
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


def parse_pe_spec(spec: str) -> tuple[float, int]:
    """'pe_1.25_80' -> (1.25, 80): base and number of levels of NeRV's positional encoding."""
    parts = spec.split("_")
    if len(parts) != 3 or parts[0] != "pe":
        raise ValueError(f"positional encoding {spec!r}: expected pe_<base>_<levels>, e.g. pe_1.25_80")
    return float(parts[1]), int(parts[2])


class FramePositionalEncoding(nn.Module):
    """NeRV's pe_<base>_<levels>: b_l = base^l * pi in float32; t*b and sin/cos in float64; cast to float32.

    Output is (B, 2*levels, 1, 1): [levels sines, levels cosines]. The float64 product matters for
    the top bases (~1.4e8 for pe_1.25_80) when loading weights trained by the original code.
    """

    def __init__(self, base: float = 1.25, levels: int = 80):
        super().__init__()
        self.base, self.levels = base, levels
        bases = (torch.tensor(base, dtype=torch.float32) ** torch.arange(levels, dtype=torch.float32)) * math.pi
        self.register_buffer("bases", bases.to(torch.float32), persistent=False)

    @property
    def out_dim(self) -> int:
        return 2 * self.levels

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t64 = t.reshape(-1, 1).to(torch.float64)
        prod = t64 * self.bases.to(torch.float64)
        pe = torch.cat([torch.sin(prod), torch.cos(prod)], dim=-1).to(torch.float32)
        return pe.reshape(t64.shape[0], -1, 1, 1)
