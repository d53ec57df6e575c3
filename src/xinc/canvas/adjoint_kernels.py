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


def _apply_source(zp, Jc, PY, CY, NY, LX, XL, XJ, NE, nd, gk, start, C, r, maps):  # noqa: C901 - one kernel
    """maps[k, ch, y] = gk[ch, y] + sum over the rows ry of y (PY[sy, ry] = y) of: sum_j<nd Jc[o, ch, ry, j W + x]
    ze[CY[sy, ry], j, x] (ze[cy, j, x] = zp[k, cy, LX[sx, x] + j], contiguous loops) plus, at columns XL[sx, e],
    Jc[o, ch, ry, nd W + e] zp[k, cy, LX[sx, XL[sx, e]] + XJ[sx, e]] (zp zero padded; CY and LX include the
    padding); o = (start + k) mod C = c r^2 + sy r + sx. Each map row is written once."""
    nout, W = Jc.shape[1], maps.shape[3]
    H = maps.shape[2]
    hp = zp.shape[1]
    ze = np.empty((hp, nd, W), np.float32)
    acc = np.empty(W, np.float32)
    for k in range(zp.shape[0]):
        o = (start + k) % C
        sy, sx = (o % (r * r)) // r, o % r
        lx = LX[sx]
        ne = NE[sx]
        for cy in range(hp):
            zr = zp[k, cy]
            for j in range(nd):
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
                    cy = CY[sy, ry]
                    zc, zr = ze[cy], zp[k, cy]
                    jr = jo[ry]
                    for j in range(nd):
                        for x in range(W):
                            acc[x] += jr[j * W + x] * zc[j, x]
                    for e in range(ne):
                        x = XL[sx, e]
                        acc[x] += jr[nd * W + e] * zr[lx[x] + XJ[sx, e]]
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
    tabs = (cj.PY.numpy(), (cj.CY + p).numpy(), cj.NY.numpy(), (cj.LX + p).numpy(), cj.XL.numpy(), cj.XJ.numpy(),
            cj.NE.numpy(), cj.nd)
    Jc = cj.Jc.numpy()
    kern = _apply_kernel()
    parts = kernels.split(n, kernels.threads())

    def job(i: int) -> None:
        a, b = parts[i]
        kern(zp[a:b], Jc, *tabs, gk, start + a, C, cj.r, maps[a:b])

    kernels.map_ranges(len(parts), job)
    return torch.from_numpy(maps)


def _gather_source(P, f0, p0, p1, PY, CY, NY, LX, XL, XJ, NE, nd, r, h, c0, c1, Jc):
    """Jc[c r^2 + sy r + sx, ch, ry, entry] = P[fy - f0, t1, x // Rl, x % Rl, ch, c, dy, dx] for the rows ry of
    output rows [p0, p1) (fy, t1 = divmod(PY[sy, ry], Rl); entry j W + x < nd W: column x, slot j; entry
    nd W + e: column XL[sx, e], slot XJ[sx, e]; dy, dx the cell's fine offset in the window; zero outside it),
    for channels c0 <= c < c1. One output row of P (W patches, cache-sized) at a time, Jc written along the row."""
    Rl, nout, D = P.shape[1], P.shape[4], P.shape[6]
    W = (Jc.shape[3] - XL.shape[1]) // nd if nd else 0
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
                        dst = Jc[o, ch, ry]
                        for e in range(nd * W + NE[sx]):
                            x, j = (e % W, e // W) if e < nd * W else (XL[sx, e - nd * W], XJ[sx, e - nd * W])
                            dx = (lx[x] + j) * r + sx - x // Rl + h
                            if 0 <= dy < D and 0 <= dx < D:
                                dst[e] = P[fy, t1, x // Rl, x % Rl, ch, c, dy, dx]
                            else:
                                dst[e] = np.float32(0.0)


@functools.cache
def _gather_kernel():
    return kernels.jit(_gather_source)


def gather_band(P: torch.Tensor, h: int, Jc: torch.Tensor, tables, nd: int, r: int, f0: int, p0: int,
                p1: int) -> None:
    """One band's fine patches P (xinc.canvas.adjoint._band_fine) into the compact Jc; tables = (PY, CY, NY, LX,
    XL, XJ, NE) and nd of xinc.canvas.adjoint.CompactJacobian."""
    args = (P.contiguous().numpy(), f0, p0, p1, *(t.numpy() for t in tables), nd, r, h)
    out, kern = Jc.numpy(), _gather_kernel()
    parts = kernels.split(P.shape[5], kernels.threads())
    kernels.map_ranges(len(parts), lambda i: kern(*args, *parts[i], out))
