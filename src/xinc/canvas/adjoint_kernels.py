"""Compiled CPU kernel (numba) of the linear NeRV block rule's adjoint product on the compact Jacobian.

map_k(p) = gamma(p) / K + sum over the cells p reaches of Jc[o, p, cell] z_k[cell], written straight into the
(n, nout, H, W) maps: one read of the neuron's compact Jacobian (only reachable cells, xinc.canvas.adjoint.
CompactJacobian), no intermediate product tensor, no pixel-shuffle copy, the bias term added in the same pass.
Neurons are split over the kernel worker threads (xinc.canvas.kernels.map_ranges: torch's pool idles meanwhile,
never nested). Used for float32 CPU tensors when numba imports; otherwise the batched product in
xinc.canvas.adjoint.apply_jacobian runs on the full Jacobian (same numbers to float32 round-off).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from xinc.canvas import kernels


def _apply_source(zp, Jc, PY, CY, NY, LX, gk, start, C, r, maps):
    """maps[k, ch, y] = gk[ch, y] + sum over the rows ry of y (PY[sy, ry] = y) of sum_j Jc[o, ch, ry, j, x]
    ze[CY[sy, ry], j, x], ze[cy, j, x] = zp[k, cy, LX[sx, x] + j] (zp zero padded; CY and LX include the
    padding); o = (start + k) mod C = c r^2 + sy r + sx. Each map row is written once; inner loops contiguous."""
    nout, nx, W = Jc.shape[1], Jc.shape[3], Jc.shape[4]
    H = maps.shape[2]
    hp = zp.shape[1]
    ze = np.empty((hp, nx, W), np.float32)
    acc = np.empty(W, np.float32)
    for k in range(zp.shape[0]):
        o = (start + k) % C
        sy, sx = (o % (r * r)) // r, o % r
        lx = LX[sx]
        for cy in range(hp):
            zr = zp[k, cy]
            for j in range(nx):
                for x in range(W):
                    ze[cy, j, x] = zr[lx[x] + j]
        for ch in range(nout):
            jo = Jc[o, ch]
            ry, ny = 0, NY[sy]
            for y in range(H):
                g = gk[ch, y]
                for x in range(W):
                    acc[x] = g[x]
                while ry < ny and PY[sy, ry] == y:
                    zc = ze[CY[sy, ry]]
                    jr = jo[ry]
                    for j in range(nx):
                        for x in range(W):
                            acc[x] += jr[j, x] * zc[j, x]
                    ry += 1
                m = maps[k, ch, y]
                for x in range(W):
                    m[x] = acc[x]


@functools.cache
def _apply_kernel():
    return kernels.jit(_apply_source)


def available(z: torch.Tensor) -> bool:
    """The compiled path applies: numba on, float32 CPU tensors."""
    return kernels.available() and z.device.type == "cpu" and z.dtype == torch.float32


def apply_compact(cj, z: torch.Tensor, start: int, num_neurons: int) -> torch.Tensor:
    """Maps (n, nout, H, W) of neurons [start, start + n) from their per-kernel convs z (n, Hc, Wc) on the compact
    Jacobian `cj` (xinc.canvas.adjoint.CompactJacobian, with the downstream bias term cj.gamma (nout, H, W))."""
    n = z.shape[0]
    C, nout = cj.Jc.shape[0], cj.Jc.shape[1]
    gamma = cj.gamma
    H, W = gamma.shape[-2:]
    p = cj.pad
    gk = (gamma / num_neurons).contiguous().numpy()
    o = (torch.arange(start, start + n) % C).to(z.device)
    z = z * cj.slope.index_select(0, o)  # block b's own slope: a factor of the neuron's cell
    zp = torch.nn.functional.pad(z, (p, p, p, p)).contiguous().numpy()
    maps = np.empty((n, nout, H, W), np.float32)
    tabs = (cj.PY.numpy(), (cj.CY + p).numpy(), cj.NY.numpy(), (cj.LX + p).numpy())
    Jc = cj.Jc.numpy()
    kern = _apply_kernel()
    parts = kernels.split(n, kernels.threads())

    def job(i: int) -> None:
        a, b = parts[i]
        kern(zp[a:b], Jc, *tabs, gk, start + a, C, cj.r, maps[a:b])

    kernels.map_ranges(len(parts), job)
    return torch.from_numpy(maps)


def _gather_source(P, f0, p0, p1, PY, CY, NY, LX, r, h, c0, c1, Jc):
    """Jc[c r^2 + sy r + sx, ch, ry, j, x] = P[fy - f0, t1, x // Rl, x % Rl, ch, c, dy, dx] for the rows ry of
    output rows [p0, p1) (fy, t1 = divmod(PY[sy, ry], Rl); dy, dx the cell's fine offset in the window; zero
    outside it), for channels c0 <= c < c1. One output row of P (W patches, cache-sized) at a time, Jc written
    along x."""
    Rl, nout, D = P.shape[1], P.shape[4], P.shape[6]
    nx, W = Jc.shape[3], Jc.shape[4]
    for sy in range(r):
        for ry in range(NY[sy]):
            py = PY[sy, ry]
            if py < p0 or py >= p1:
                continue
            fy, t1 = py // Rl - f0, py % Rl
            dy = CY[sy, ry] * r + sy - py // Rl + h
            for c in range(c0, c1):
                for sx in range(r):
                    o = c * r * r + sy * r + sx
                    lx = LX[sx]
                    for ch in range(nout):
                        for j in range(nx):
                            dst = Jc[o, ch, ry, j]
                            for x in range(W):
                                dx = (lx[x] + j) * r + sx - x // Rl + h
                                if 0 <= dy < D and 0 <= dx < D:
                                    dst[x] = P[fy, t1, x // Rl, x % Rl, ch, c, dy, dx]
                                else:
                                    dst[x] = np.float32(0.0)


@functools.cache
def _gather_kernel():
    return kernels.jit(_gather_source)


def gather_band(P: torch.Tensor, h: int, Jc: torch.Tensor, PY, CY, NY, LX, r: int, f0: int, p0: int,
                p1: int) -> None:
    """Compiled form of xinc.canvas.adjoint._gather_band: one band's fine patches P into the compact Jc."""
    args = (P.contiguous().numpy(), f0, p0, p1, PY.numpy(), CY.numpy(), NY.numpy(), LX.numpy(), r, h)
    out, kern = Jc.numpy(), _gather_kernel()
    parts = kernels.split(P.shape[5], kernels.threads())
    kernels.map_ranges(len(parts), lambda i: kern(*args, *parts[i], out))
