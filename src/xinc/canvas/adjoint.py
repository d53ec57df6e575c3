"""Adjoint form of the linear (corrected) NeRV block rule: per-pixel Jacobians on a small window.

The tangent network of a NeRV downstream of block b is linear, so the linear-mode map of neuron k = (i, o) is
map_k(p) = sum_q J[p, o, q] z_k[cell(p) + q] + gamma(p) / K, where z_k is the neuron's per-kernel conv on
block b's coarse grid (pre-shuffle channel o), J[p, o, q] the derivative of the head logits at output pixel p
(summed over RGB, or per channel) w.r.t. block b's pre-shuffle conv output at coarse cell cell(p) + q, and
gamma the downstream biases pushed through the tangent network once. Every output pixel sees only a small
window of that grid (its receptive field), so J is computed for all pixels at once by propagating window
patches backwards from the head: head weights -> x activation slopes gathered at each pixel's window ->
pixel-unshuffle into the coarser grid (one gather per sub-pixel phase) -> conv_transpose2d with the next
conv's weights (pixels as the batch) -> ... . Half-widths go h -> ceil(h / r) through a shuffle and
h -> h + k // 2 through a k x k conv. One frame's J is then shared by every neuron chunk: a chunk costs one
batched (1 x Q) @ (Q x R^2) product per neuron and coarse cell instead of a pass through the downstream convs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from xinc.canvas import adjoint_kernels

BAND_ELEMS = 1 << 23  # floats of one band's final patch tensor while J is built (bounds the temporaries)


@dataclass
class PixelJacobian:
    """J (C_pre, Hc*Wc, Q, nout*R*R): d logits at the R x R output pixels of each coarse cell / d u_pre at the
    Q = (2 half + 1)^2 cells of its window; gamma (nout, H, W) the downstream biases through the tangent net."""

    J: torch.Tensor
    half: int
    R: int
    nout: int
    gamma: torch.Tensor

    @property
    def window(self) -> int:
        return 2 * self.half + 1


def window_halfwidth(strides: list[int], kernels: list[int], head_k: int) -> int:
    """Half-width of the receptive window on block b's pre-shuffle grid: strides/kernels of blocks b..N-1
    (b's own stride first, its own kernel unused), head kernel head_k."""
    h = head_k // 2
    for j in range(len(strides) - 1, -1, -1):
        h = -(-h // strides[j])  # ceil(h / r): through block j's shuffle
        if j > 0:
            h += kernels[j] // 2  # through block j's conv (not block b's own conv)
    return h


def jacobian_bytes(model, index: int, per_channel: bool) -> int:
    """Bytes of the stored J of block `index` (float32)."""
    blocks = model.blocks[index:]
    h = window_halfwidth([b.stride for b in blocks], [b.conv.kernel_size[0] for b in blocks],
                         model.head.kernel_size[0])
    cfg = model.config
    return 4 * blocks[0].conv.out_channels * cfg.height * cfg.width * (2 * h + 1) ** 2 * (3 if per_channel else 1)


def _windows(S: torch.Tensor, r0: int, r1: int, h: int) -> torch.Tensor:
    """Zero-padded (2h+1)^2 windows of S (C, H, W) around rows [r0, r1): a view (r1 - r0, W, C, D, D)."""
    C, H, W = S.shape
    lo, hi = max(0, r0 - h), min(H, r1 + h)
    slab = F.pad(S[:, lo:hi], (h, h, lo - (r0 - h), (r1 + h) - hi))
    D = 2 * h + 1
    return slab.unfold(1, D, 1).unfold(2, D, 1).permute(1, 2, 0, 3, 4)


def _unshuffle(J: torch.Tensor, r: int, h: int) -> tuple[torch.Tensor, int]:
    """Patches w.r.t. a post-shuffle tensor (rows, Rl, Wl, Rl, nout, C, D, D) -> w.r.t. its pre-shuffle tensor,
    as (rows/r, r, Rl, Wl/r, r, Rl, nout, C, D', r, D', r) (window cell q', sub-pixel s interleaved; channel
    c r^2 + s1 r + s2 as in F.pixel_shuffle). For fine phase t the fine offset delta = q' r + s - t, so the
    interleaved slot (q' + h') r + s = delta + h + (h' r + t - h): each phase is a shifted copy (zero padded)."""
    rows, Rl, Wl, _, nout, C, D, _ = J.shape
    h_new = -(-h // r)
    Dn = 2 * h_new + 1
    src = J.view(rows // r, r, Rl, Wl // r, r, Rl, nout, C, D, D)
    out = J.new_zeros(rows // r, r, Rl, Wl // r, r, Rl, nout, C, Dn * r, Dn * r)
    for t1 in range(r):
        a1 = h_new * r + t1 - h
        for t2 in range(r):
            a2 = h_new * r + t2 - h
            out[:, t1, :, :, t2, :, :, :, a1:a1 + D, a2:a2 + D] = src[:, t1, :, :, t2]
    return out.view(rows // r, r, Rl, Wl // r, r, Rl, nout, C, Dn, r, Dn, r), h_new


def _merge(J: torch.Tensor) -> torch.Tensor:
    """(rows', r, Rl, Wl', r, Rl, nout, C, D', r, D', r) -> (rows', r Rl, Wl', r Rl, nout, C r^2, D', D')."""
    rows, r, Rl, Wl, _, _, nout, C, Dn = J.shape[:9]
    return (J.permute(0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 8, 10)
            .reshape(rows, r * Rl, Wl, r * Rl, nout, C * r * r, Dn, Dn))


def _band(model, index: int, slopes: list[torch.Tensor], head_w: torch.Tensor, y0: int, y1: int) -> torch.Tensor:
    """Patches (rows, r, R/r, Wc, r, R/r, nout, C, D, r, D, r) (as _unshuffle returns them; r = block `index`'s
    stride, C its channels after the shuffle) for the output pixels over coarse rows [y0, y1) of its pre-shuffle
    grid: head -> slope -> unshuffle -> conv^T -> slope -> ... -> unshuffle."""
    J, h = _band_fine(model, index, slopes, head_w, y0, y1)
    return _unshuffle(J, model.blocks[index].stride, h)[0]


def _band_fine(model, index: int, slopes: list[torch.Tensor], head_w: torch.Tensor, y0: int, y1: int,
               own_slope: bool = True) -> tuple[torch.Tensor, int]:
    """The band's patches w.r.t. block `index`'s output (its post-shuffle grid) before its own unshuffle:
    (rows r, R/r, Wc r, R/r, nout, C, D, D) with D = 2 h + 1, and h; own_slope=False leaves out the factor of
    block `index`'s own activation slope (the compact form applies it to z instead: it depends on the cell only)."""
    blocks = model.blocks[index:]
    R = math.prod(b.stride for b in blocks)
    h = head_w.shape[-1] // 2
    J = None
    Rl = 1
    for j in range(len(blocks) - 1, -1, -1):
        S = slopes[j]  # activation slope of block index+j's output, on its grid
        r0, r1 = y0 * R // Rl, y1 * R // Rl
        if j == 0 and not own_slope:
            shape = (r1 - r0, 1, S.shape[-1], 1, *head_w.shape)
            return (J if J is not None else head_w[None, None, None, None].expand(shape).contiguous()), h
        win = _windows(S, r0, r1, h)  # (rows, Wl, C, D, D)
        if J is None:  # at the output: the head patch is the same for every pixel
            J = (win[:, None, :, None, None] * head_w[None, None, None, None]).contiguous()
        else:
            J = J * win[:, None, :, None, None]
        if j == 0:
            return J, h
        J, h = _unshuffle(J, blocks[j].stride, h)
        Rl *= blocks[j].stride
        J = _merge(J)
        w = blocks[j].conv.weight
        shape = J.shape
        J = F.conv_transpose2d(J.reshape(-1, *shape[-3:]), w)
        h += w.shape[-1] // 2
        J = J.view(*shape[:-3], *J.shape[-3:])
    raise ValueError("no blocks downstream")


def bias_tangent(model, index: int, slopes: list[torch.Tensor]) -> torch.Tensor:
    """gamma (3, H, W): the downstream biases of block `index` pushed through the tangent network from zero
    (convs with their biases, shuffles, activation slopes at the true forward pass)."""
    convs = [b.conv for b in model.blocks[index + 1:]] + [model.head]
    first = convs[0]
    y = first.bias[:, None, None].expand(-1, *slopes[0].shape[-2:])
    for q, conv in enumerate(convs[1:]):
        blk = model.blocks[index + 1 + q]
        y = F.pixel_shuffle(y[None], blk.stride)[0] * slopes[q + 1]
        y = F.conv2d(y[None], conv.weight, conv.bias, padding=conv.kernel_size[0] // 2)[0]
    return y


def pixel_jacobian(model, index: int, slopes: list[torch.Tensor], per_channel: bool,
                   band_elems: int = BAND_ELEMS) -> PixelJacobian:
    """J of block `index` for every output pixel (see PixelJacobian), built in bands of coarse rows.

    slopes[j]: activation slope at block index+j's output (C, h, w), j = 0..N-1-index."""
    blocks = model.blocks[index:]
    cfg = model.config
    R = math.prod(b.stride for b in blocks)
    Hc, Wc = cfg.height // R, cfg.width // R
    half = window_halfwidth([b.stride for b in blocks], [b.conv.kernel_size[0] for b in blocks],
                            model.head.kernel_size[0])
    head_w = model.head.weight.detach()
    head_w = head_w if per_channel else head_w.sum(0, keepdim=True)
    nout, C = head_w.shape[0], blocks[0].conv.out_channels
    Q = (2 * half + 1) ** 2
    J = head_w.new_empty(C, Hc, Wc, Q, nout, R, R)
    per_row = Wc * R * R * nout * C * Q
    step = max(1, min(Hc, band_elems // max(per_row, 1)))
    for y0 in range(0, Hc, step):
        y1 = min(Hc, y0 + step)
        P = _band(model, index, slopes, head_w, y0, y1)  # (rows, r, R/r, Wc, r, R/r, nout, c, D, r, D, r)
        rows, r = y1 - y0, P.shape[1]
        # -> (c, s1, s2, rows, Wc, q1, q2, nout, t1 = (r, R/r), t2 = (r, R/r)): channel c r^2 + s1 r + s2
        J[:, y0:y1].view(C // (r * r), r, r, rows, Wc, 2 * half + 1, 2 * half + 1, nout, r, R // r, r, R // r
                         ).copy_(P.permute(7, 9, 11, 0, 3, 8, 10, 6, 1, 2, 4, 5))
    gamma = bias_tangent(model, index, slopes)
    if not per_channel:
        gamma = gamma.sum(0, keepdim=True)
    return PixelJacobian(J.view(C, Hc * Wc, Q, nout * R * R), half, R, nout, gamma)


def apply_jacobian(pj: PixelJacobian, z: torch.Tensor, start: int, num_neurons: int) -> torch.Tensor:
    """Maps (n, nout, H, W) of neurons [start, start + n) from their per-kernel convs z (n, Hc, Wc) (neuron
    k = i C_pre + o): sum_q J[o, cell, q] z[cell + q] + gamma / K, by row pieces with contiguous o."""
    n, Hc, Wc = z.shape
    C, cells, Q, T = pj.J.shape
    R, nout, D = pj.R, pj.nout, pj.window
    h = pj.half
    zw = F.pad(z, (h, h, h, h)).unfold(1, D, 1).unfold(2, D, 1).reshape(n, cells, Q)  # windows of every cell
    gk = (pj.gamma / num_neurons).view(nout, Hc, R, Wc, R)
    maps = z.new_empty(n, nout, Hc * R, Wc * R)
    j, k = 0, start
    while j < n:
        i, o = divmod(k, C)
        if o == 0 and n - j >= 2 * C:  # whole rows: one GEMM per (o, cell) over the rows
            rows = (n - j) // C
            A = zw[j:j + rows * C].reshape(rows, C * cells, Q).transpose(0, 1)  # (C cells, rows, Q)
            out = torch.bmm(A, pj.J.view(C * cells, Q, T))  # (C cells, rows, T)
            out = out.view(C, Hc, Wc, rows, nout, R, R).permute(3, 0, 4, 1, 5, 2, 6)
            dst = maps[j:j + rows * C].view(rows, C, nout, Hc, R, Wc, R)
            torch.add(out, gk, out=dst)
            j, k = j + rows * C, k + rows * C
            continue
        m = min(n - j, C - o)
        out = torch.bmm(zw[j:j + m].reshape(m * cells, 1, Q), pj.J[o:o + m].reshape(m * cells, Q, T))
        dst = maps[j:j + m].view(m, nout, Hc, R, Wc, R)
        torch.add(out.view(m, Hc, Wc, nout, R, R).permute(0, 3, 1, 4, 2, 5), gk, out=dst)
        j, k = j + m, k + m
    return maps


# ---- compact Jacobian: only the window cells an output pixel can reach (CPU compiled path) -------------------------
#
# J above stores, for every output pixel, the whole (2 half + 1)^2 window of coarse cells for every pre-shuffle
# channel o = c r^2 + s. Through block b's own shuffle a sub-pixel s only lands on one fine position in r of each
# coarse cell, so of the window only the cells whose position cell r + s lies in the pixel's receptive interval on
# block b's output grid can be nonzero (13 % of J on the bunny NeRV's block1, 43 % on block2, 25 % on block3).
# The interval is a product of one interval per axis, so the reachable cells are, per axis and sub-pixel, a short
# run: rows are kept exactly (a list of (pixel row, cell row) pairs per sub-pixel row); columns as `nd` dense slots
# (the run's first nd cells, nd the shortest run: every output column has them) and a list of (column, slot j) for
# the columns whose run is longer.
# The compiled kernel then reads only these entries (xinc.canvas.adjoint_kernels; CPU float32 with numba).


def fine_interval(coord: int, strides: list[int], kernels: list[int], head_k: int) -> tuple[int, int]:
    """[lo, hi] on block b's output grid (one axis) that output coordinate `coord` depends on; strides/kernels of
    blocks b..N-1 as in window_halfwidth. Image borders are ignored (the window is zero padded there)."""
    lo, hi = coord - head_k // 2, coord + head_k // 2
    for j in range(len(strides) - 1, 0, -1):
        lo, hi = lo // strides[j] - kernels[j] // 2, hi // strides[j] + kernels[j] // 2
    return lo, hi


def axis_runs(size: int, strides: list[int], kernels: list[int], head_k: int) -> tuple[list, list]:
    """Per sub-pixel s < r (block b's stride) and output coordinate: the first coarse cell and the count of
    cells c with c r + s inside the coordinate's fine interval. Returns (first, count), each [r][size]."""
    r = strides[0]
    first = [[0] * size for _ in range(r)]
    count = [[0] * size for _ in range(r)]
    for p in range(size):
        lo, hi = fine_interval(p, strides, kernels, head_k)
        for s in range(r):
            a, b = -((s - lo) // r), (hi - s) // r  # ceil((lo - s) / r), floor((hi - s) / r)
            first[s][p], count[s][p] = a, max(0, b - a + 1)
    return first, count


@dataclass
class CompactJacobian:
    """Jc (C_pre, nout, Ymax, nd W + Emax): J at the reachable cells only, without block b's own activation slope
    (a factor of the cell alone: it multiplies z_k instead). Row ry of sub-pixel row sy is output row PY[sy, ry]
    (rows ordered by PY; NY[sy] rows used) and cell row CY[sy, ry]. Entry j W + x (j < nd) of a row is output
    column x at cell column LX[sx, x] + j; entry nd W + e (e < NE[sx]) is output column x = XL[sx, e] at cell
    column LX[sx, x] + XJ[sx, e].
    Cells are unpadded coarse coordinates (may lie outside the grid by up to `pad`: z is zero padded there)."""

    Jc: torch.Tensor
    PY: torch.Tensor
    CY: torch.Tensor
    NY: torch.Tensor
    LX: torch.Tensor
    XL: torch.Tensor
    XJ: torch.Tensor
    NE: torch.Tensor
    nd: int
    r: int
    pad: int
    gamma: torch.Tensor  # (nout, H, W): the downstream biases through the tangent network (PixelJacobian.gamma)
    slope: torch.Tensor  # (C_pre, Hc, Wc): block b's activation slope at each pre-shuffle channel and cell


def _pad_pairs(pairs: list[list[tuple[int, int]]], least: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sub-pixel lists of (a, b) pairs as two zero-padded (S, longest) int64 tables and each list's length."""
    width = max(least, max(len(ps) for ps in pairs))
    A = torch.zeros(len(pairs), width, dtype=torch.int64)
    B = torch.zeros(len(pairs), width, dtype=torch.int64)
    for s, ps in enumerate(pairs):
        if ps:
            A[s, :len(ps)] = torch.tensor([a for a, _ in ps])
            B[s, :len(ps)] = torch.tensor([b for _, b in ps])
    return A, B, torch.tensor([len(ps) for ps in pairs], dtype=torch.int64)


def _row_table(first: list, count: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sub-pixel s: the (output row, cell row) pairs in output-row order, padded to the longest s."""
    return _pad_pairs([[(p, f + a) for p, (f, n) in enumerate(zip(fs, ns)) for a in range(n)]
                       for fs, ns in zip(first, count)])


def _extra_table(count: list, nd: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sub-pixel s: the (output column, slot j >= nd) pairs of columns whose run has more than nd cells."""
    return _pad_pairs([[(x, j) for x, n in enumerate(ns) for j in range(nd, n)] for ns in count], least=1)


def compact_jacobian(model, index: int, slopes: list[torch.Tensor], per_channel: bool,
                     band_elems: int = BAND_ELEMS) -> CompactJacobian:
    """The compact J of block `index` (see CompactJacobian), gathered band by band straight from the patches
    on block `index`'s output grid (the full J and its last unshuffle are never built). Needs the compiled
    kernels (xinc.canvas.adjoint_kernels.available)."""
    blocks = model.blocks[index:]
    strides, ks, hk = [b.stride for b in blocks], [b.conv.kernel_size[0] for b in blocks], model.head.kernel_size[0]
    cfg, R, r = model.config, math.prod(strides), strides[0]
    H, W, Hc, Wc = cfg.height, cfg.width, cfg.height // R, cfg.width // R
    half = window_halfwidth(strides, ks, hk)
    head_w = model.head.weight.detach()
    head_w = head_w if per_channel else head_w.sum(0, keepdim=True)
    nout, C = head_w.shape[0], blocks[0].conv.out_channels
    PY, CY, NY = _row_table(*axis_runs(H, strides, ks, hk))
    fx, nxs = axis_runs(W, strides, ks, hk)
    LX = torch.tensor(fx, dtype=torch.int64)
    nd = min(min(ns) for ns in nxs)
    XL, XJ, NE = _extra_table(nxs, nd)
    Jc = head_w.new_zeros(C, nout, PY.shape[1], nd * W + XL.shape[1])
    step = max(1, min(Hc, band_elems // max(Wc * R * R * nout * C * (2 * half + 1) ** 2, 1)))
    for y0 in range(0, Hc, step):
        y1 = min(Hc, y0 + step)
        P, h = _band_fine(model, index, slopes, head_w, y0, y1, own_slope=False)
        adjoint_kernels.gather_band(P, h, Jc, (PY, CY, NY, LX, XL, XJ, NE), nd, r, y0 * r, y0 * R, y1 * R)
    lo = min(int(CY.min()), int(LX.min()))
    hi = max(int(CY.max()) - (Hc - 1), int(LX.max()) + max(int(XJ.max()), nd - 1) - (Wc - 1))
    gamma = bias_tangent(model, index, slopes)
    gamma = gamma if per_channel else gamma.sum(0, keepdim=True)
    slope = F.pixel_unshuffle(slopes[0][None], r)[0].contiguous()
    return CompactJacobian(Jc, PY, CY, NY, LX, XL, XJ, NE, nd, r, max(0, -lo, hi), gamma, slope)
