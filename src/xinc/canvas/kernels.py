"""Compiled CPU kernels (numba) for fused reductions that eager PyTorch can only do in several passes.

The MLP paper rule's heat map needs, for every pixel p, sum_i |phi(a_i(p) s_i + beta)| and the additive part
sum_i (a_i(p) s_i + beta). Eager PyTorch writes the (P, n) products, reads them to sum, rewrites them with
|phi(.)| and reads them again; this kernel reads `a` once and keeps everything in registers. It is exact to
float32 round-off like the eager path (sums are reassociated so they vectorise; products may use FMA).

The paper NeRV block rule runs every filter stage of a map in one call (block_chain): the map's planes stay in
cache, the activation is compiled in (GELU through a rational fit of erf, named beside its coefficients), two
stages with no activation between them run as one composite linear map (merge_tables, _merged) and the last
stage reduces straight into the heat map and the neuron's total.

Used only for float32 CPU tensors when numba imports; otherwise (CUDA, other dtypes, no numba) the rules
fall back to their PyTorch tiles. The first call in a process costs ~0.5-1 s (numba's start-up; the
machine code itself is cached on disk beside this module), which pays off from a few hundred calls on; the
block kernel's first compile without that cache takes ~15 CPU-s.
`ENABLED = False`, or XINC_NUMBA=0 in the environment, turns the kernels off (tests compare both paths).
"""

from __future__ import annotations

import functools
import os
import warnings

import numpy as np
import torch

ENABLED = os.environ.get("XINC_NUMBA", "1") != "0"
PHIS = ("identity", "relu")  # activations the MLP kernel handles (sin/tanh/erf vectorise better in PyTorch)


@functools.cache
def _numba():
    """The numba module, or None when it is not installed or fails to import."""
    try:
        import numba
    except Exception:  # noqa: BLE001 - any import failure means: use the PyTorch path
        return None
    return numba


def available() -> bool:
    return ENABLED and _numba() is not None


def backend() -> str | None:
    """What compiles the kernels ("numba 0.68.1"), or None when they are off or numba is missing."""
    return f"numba {_numba().__version__}" if available() else None


def _jit(fn, fastmath: bool = True):
    """njit with an on-disk cache where the package directory is writable (else compiled per process);
    fastmath=False keeps IEEE order (kernels that must round exactly like a PyTorch reference)."""
    numba = _numba()
    opts = dict(nogil=True, fastmath={"reassoc", "contract"} if fastmath else False,
                error_model="numpy")  # no zero-division branches
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return numba.njit(cache=True, **opts)(fn)
    except Exception:  # noqa: BLE001 - no writable cache location
        return numba.njit(cache=False, **opts)(fn)


def _mlp_source(a, s, beta, relu, totals, heat, part, tot):
    """heat[p] = sum_j |phi(a[p, j] s[j] + beta)| with phi = relu or identity, part[p] = sum_j (a[p, j] s[j] +
    beta) and, with totals, tot[j] += |phi(.)| (float32 within 256 rows, float64 across). Row by row; each
    inner loop is branch-free and vectorises (relu(x) = (x + |x|) / 2 exactly, no branch). a (P, c)
    C-contiguous; indices come straight from range(), so no wraparound checks block vectorisation."""
    c = a.shape[1]
    acc = np.zeros(c, np.float32)  # fresh, so the compiler knows it aliases nothing
    y = np.empty(c, np.float32)
    zero, half = np.float32(0.0), np.float32(0.5)
    for p in range(a.shape[0]):
        q = zero
        h = zero
        if not totals:  # heat only: one fused loop
            if relu:
                for j in range(c):
                    x = a[p, j] * s[j] + beta
                    q += x
                    h += (x + abs(x)) * half
            else:
                for j in range(c):
                    x = a[p, j] * s[j] + beta
                    q += x
                    h += abs(x)
        else:
            for j in range(c):
                x = a[p, j] * s[j] + beta
                q += x
                y[j] = (x + abs(x)) * half if relu else abs(x)
            for j in range(c):
                h += y[j]
                acc[j] += y[j]
            if p % 256 == 255:
                for j in range(c):
                    tot[j] += acc[j]
                    acc[j] = zero
        heat[p] = h
        part[p] = q
    if totals:
        for j in range(c):
            tot[j] += acc[j]


@functools.cache
def _mlp_kernel():
    return _jit(_mlp_source)


def mlp_reduce(a: torch.Tensor, start: int, stop: int, s: torch.Tensor, beta: float, phi: str,
               totals: bool = False):
    """(heat (P,), part (P,), totals (stop-start,) float64 or None) of C_i(p) = phi(a_i(p) s_i + beta) over
    neurons i in [start, stop), phi in PHIS, from one pass over a (P, n) float32 CPU tensor; None when the
    kernel does not apply (then use the PyTorch path)."""
    if not available() or phi not in PHIS or a.device.type != "cpu" or a.dtype != torch.float32:
        return None
    a = a.detach()
    a_np = (a if (start, stop) == (0, a.shape[1]) else a[:, start:stop]).contiguous().numpy()  # sub-range: copy
    s_np = s.detach().to(torch.float32).contiguous().numpy()
    P, c = a_np.shape[0], stop - start
    heat, part = np.empty(P, np.float32), np.empty(P, np.float32)
    tot = np.zeros(c if totals else 1, np.float64)
    _mlp_kernel()(a_np, s_np, np.float32(beta), phi == "relu", bool(totals), heat, part, tot)
    return torch.from_numpy(heat), torch.from_numpy(part), torch.from_numpy(tot) if totals else None


# ------------------------------------------------------------------ paper block rule: every stage of a neuron at once

ACTS = {"identity": 0, "relu": 1, "gelu": 2, "silu": 3}  # activation codes of the block kernel

# GELU(x) = x/2 (1 + erf(x / sqrt 2)) with erf(t) ~ t P(t^2) / Q(t^2) for |t| <= 4 (erf(t) rounds to +-1 in float32
# beyond): a rational fit made for xinc (Lawson-weighted least squares, relative error of erf 2.0e-9 on [0, 4] in
# exact arithmetic). It is evaluated as GELU(x) = x (1/2 + c p(c^2) / q(c^2)) with c = x clamped to +-4 sqrt 2,
# p(z) = P(z / 2) / (2 sqrt 2) and q(z) = Q(z / 2) (the scalings folded into the coefficients, in float64, then
# rounded once), which saves three multiplications per value. In float32 it is within 2.1e-7 |x| of the exact
# GELU, PyTorch's float32 gelu within 3.7e-7 |x| (dense grid, tests/test_canvas.py). Branch-free, so it vectorises:
# numba has no vectorised erf/exp without Intel's SVML.
_ERF_P = (1.1283791693768774, 0.18520318115712586, 0.05431690902291431, 0.0038496103586665997, 0.0003796089210307097,
          4.684779664071536e-06, -1.3202238679592094e-08)
_ERF_Q = (1.0, 0.49746545966195727, 0.11395840207146339, 0.015462087527231041, 0.0013075697167077341,
          6.311060019369464e-05)
_P0, _P1, _P2, _P3, _P4, _P5, _P6 = (np.float32(v / 2 ** k / (2 * 2 ** 0.5)) for k, v in enumerate(_ERF_P))
_Q1, _Q2, _Q3, _Q4, _Q5 = (np.float32(v / 2 ** k) for k, v in enumerate(_ERF_Q) if k > 0)
_ONE, _HALF, _CLAMP = np.float32(1.0), np.float32(0.5), np.float32(4 * 2 ** 0.5)


def _gelu1_source(x):
    """The GELU approximation above for one float32 x (inlined into the vectorised loops that call it)."""
    c = x if x < _CLAMP else _CLAMP
    c = c if c > -_CLAMP else -_CLAMP
    z = c * c
    p = (((((_P6 * z + _P5) * z + _P4) * z + _P3) * z + _P2) * z + _P1) * z + _P0
    q = ((((_Q5 * z + _Q4) * z + _Q3) * z + _Q2) * z + _Q1) * z + _ONE
    return x * (_HALF + c * p / q)


def _act_source(v, n, act):
    """v[:n] = act(v[:n]) in place (codes ACTS; 0 leaves v alone). One branch-free loop per activation."""
    if act == 1:
        for i in range(n):
            x = v[i]
            v[i] = (x + abs(x)) * _HALF
    elif act == 2:
        for i in range(n):
            v[i] = _gelu1(v[i])
    elif act == 3:
        for i in range(n):
            x = v[i]
            v[i] = x / (_ONE + np.exp(-x))


def _act_add_source(v, n, act, g):
    """_act, and g[:n] += the activated values in the same loop (the GELU loop is bound by arithmetic, so the sum
    rides along nearly free instead of costing another pass over the plane)."""
    if act == 1:
        for i in range(n):
            x = v[i]
            y = (x + abs(x)) * _HALF
            v[i] = y
            g[i] += y
    elif act == 2:
        for i in range(n):
            y = _gelu1(v[i])
            v[i] = y
            g[i] += y
    elif act == 3:
        for i in range(n):
            x = v[i]
            y = x / (_ONE + np.exp(-x))
            v[i] = y
            g[i] += y
    else:
        for i in range(n):
            g[i] += v[i]


def _wpass_source(A, h, w, P, r, d, c, cnt, Tt, T):
    """Along w: T (h, r w) (row-major, phases interleaved) with T[m, r i + t] = sum_q c[t, q] x[m, i - d[t, q]] for
    x held in A with zero padding columns (h, w + 2P), P >= |d|. Each phase is one flat loop over all padded rows
    into Tt[t] (its padding columns get values nobody reads), then the rows are interleaved."""
    Wp = w + 2 * P
    if r == 2 and cnt[0] <= 2 and cnt[1] <= 2:  # the common stride: one pass per row, phases stored interleaved
        _wpass2(A, h, w, P, d, c, cnt, T)
        return
    n = h * Wp - 2 * P
    for t in range(r):
        out = Tt[t, P:P + n]
        k = cnt[t]
        if k == 0:
            for i in range(n):
                out[i] = np.float32(0.0)
            continue
        c0, c1 = c[t, 0], (c[t, 1] if k >= 2 else np.float32(0.0))
        y0 = A[P - d[t, 0]:P - d[t, 0] + n]
        y1 = A[P - d[t, 1]:P - d[t, 1] + n] if k >= 2 else y0
        for i in range(n):
            out[i] = c0 * y0[i] + c1 * y1[i]
        for q in range(2, k):
            cq, yq = c[t, q], A[P - d[t, q]:P - d[t, q] + n]
            for i in range(n):
                out[i] += cq * yq[i]
    _interleave(Tt, h, w, P, r, T)


def _interleave_source(Tt, h, w, P, r, T):
    """Rows of phase planes Tt[t] (h, w + 2P; padding columns skipped) -> T (h, r w) with phases interleaved."""
    Wp, R = w + 2 * P, r * w
    for m in range(h):
        o, s = T[m * R:(m + 1) * R], m * Wp + P
        if r == 1:
            o[:] = Tt[0, s:s + w]
        elif r == 4:  # constant strides: interleaves the compiler vectorises
            p0, p1, p2, p3 = Tt[0, s:s + w], Tt[1, s:s + w], Tt[2, s:s + w], Tt[3, s:s + w]
            for i in range(w):
                o[4 * i] = p0[i]
                o[4 * i + 1] = p1[i]
                o[4 * i + 2] = p2[i]
                o[4 * i + 3] = p3[i]
        else:
            for t in range(r):
                pt = Tt[t, s:s + w]
                for i in range(w):
                    o[r * i + t] = pt[i]


def _wpass2_source(A, h, w, P, d, c, cnt, T):
    """_wpass for r = 2 with at most two taps per phase (zero-coefficient taps fill in): both phases of a row in one
    loop, stored interleaved."""
    Wp, zero = w + 2 * P, np.float32(0.0)
    a0, c00 = P - d[0, 0], (c[0, 0] if cnt[0] >= 1 else zero)
    a1, c01 = (P - d[0, 1], c[0, 1]) if cnt[0] >= 2 else (a0, zero)
    b0, c10 = P - d[1, 0], (c[1, 0] if cnt[1] >= 1 else zero)
    b1, c11 = (P - d[1, 1], c[1, 1]) if cnt[1] >= 2 else (b0, zero)
    for m in range(h):
        s = m * Wp
        x0, x1, z0, z1 = A[s + a0:s + a0 + w], A[s + a1:s + a1 + w], A[s + b0:s + b0 + w], A[s + b1:s + b1 + w]
        o = T[2 * w * m:2 * w * (m + 1)]
        for i in range(w):
            o[2 * i] = c00 * x0[i] + c01 * x1[i]
            o[2 * i + 1] = c10 * z0[i] + c11 * z1[i]


def _row_taps_source(m, t, h, R, d, c, cnt, rows, cs):
    """The taps of output row r m + t that fall inside the map: their input row offsets (rows, flat, row length R)
    and coefficients (cs); returns how many."""
    k = 0
    for q in range(cnt[t]):
        mm = m - d[t, q]
        if 0 <= mm < h:
            rows[k], cs[k] = mm * R, c[t, q]
            k += 1
    return k


def _hpass_source(T, h, w, r, d, c, cnt, mode, B, P2, acc, tmp, rows, cs):  # noqa: C901 - one compiled kernel
    """Along h: output row M = r m + t of the stage is y = sum_q c[t, q] T[m - d[t, q]] (rows of T (h, r w); taps
    outside the map skipped). mode 0: y into B (r h, r w + 2 P2) between zero padding columns; 1: acc (r h, r w)
    += |y| and sum |y| returned (float32 per row, float64 across); 2: acc += y. Every loop runs along a row."""
    R = r * w
    Wn = R + 2 * P2
    total = np.float64(0.0)
    zero = np.float32(0.0)
    for m in range(h):
        for t in range(r):
            M = r * m + t
            k = _row_taps(m, t, h, R, d, c, cnt, rows, cs)
            if mode == 0:
                for i in range(P2):
                    B[M * Wn + i] = zero
                    B[M * Wn + P2 + R + i] = zero
                out = B[M * Wn + P2:M * Wn + P2 + R]
            else:
                out = acc[M * R:(M + 1) * R]
            if k == 0:
                if mode == 0:
                    for i in range(R):
                        out[i] = zero
                continue
            c0, c1 = cs[0], (cs[1] if k >= 2 else zero)
            y0 = T[rows[0]:rows[0] + R]
            y1 = T[rows[1]:rows[1] + R] if k >= 2 else y0
            if k <= 2 and mode == 1:
                s = zero
                for i in range(R):
                    y = abs(c0 * y0[i] + c1 * y1[i])
                    out[i] += y
                    s += y
                total += s
                continue
            if k <= 2 and mode == 0:
                for i in range(R):
                    out[i] = c0 * y0[i] + c1 * y1[i]
                continue
            for i in range(R):
                tmp[i] = c0 * y0[i] + c1 * y1[i]
            for q in range(2, k):
                cq, yq = cs[q], T[rows[q]:rows[q] + R]
                for i in range(R):
                    tmp[i] += cq * yq[i]
            if mode == 0:
                for i in range(R):
                    out[i] = tmp[i]
            elif mode == 1:
                s = zero
                for i in range(R):
                    y = abs(tmp[i])
                    out[i] += y
                    s += y
                total += s
            else:
                for i in range(R):
                    out[i] += tmp[i]
    return total


def _hpass_pair_source(T, U, h, w, r, d, c, cnt, acc, rows, cs):
    """_hpass mode 1 for two maps with the same taps (at most two per row): acc += |y_T| + |y_U|, which halves the
    accumulator's traffic. Returns (sum |y_T|, sum |y_U|)."""
    R = r * w
    ta, tb, zero = np.float64(0.0), np.float64(0.0), np.float32(0.0)
    for m in range(h):
        for t in range(r):
            k = _row_taps(m, t, h, R, d, c, cnt, rows, cs)
            if k == 0:
                continue
            M = r * m + t
            out = acc[M * R:(M + 1) * R]
            c0, c1 = cs[0], (cs[1] if k >= 2 else zero)
            r0, r1 = rows[0], (rows[1] if k >= 2 else rows[0])
            y0, y1, z0, z1 = T[r0:r0 + R], T[r1:r1 + R], U[r0:r0 + R], U[r1:r1 + R]
            sa, sb = zero, zero
            for i in range(R):
                ya = abs(c0 * y0[i] + c1 * y1[i])
                yb = abs(c0 * z0[i] + c1 * z1[i])
                out[i] += ya + yb
                sa += ya
                sb += yb
            ta += sa
            tb += sb
    return ta, tb


def _merged_w_source(A, h, w, P, cw, lo, hi, T):
    """_merged's pass along w: T (h, W2) row m = sum over input columns b of A[m, P + b] cw[b, lo[b]:hi[b]]."""
    Wp, u, zero = w + 2 * P, np.uint64, np.float32(0.0)
    W2 = cw.shape[0] // w
    for i in range(h * W2):
        T[i] = zero
    for m in range(h):
        to = u(m * W2)
        for b in range(w):
            v = A[m * Wp + P + b]
            if v == zero:
                continue
            a0, n = lo[b], hi[b] - lo[b]
            co, oo = u(b * W2 + a0), to + u(a0)
            for i in range(n):
                T[oo + u(i)] += v * cw[co + u(i)]


def _merged_source(A, h, w, P, cw, lo, hi, chr_, chc, chn, T, B, P2):
    """Two stages at once, one linear map between the activations (_front's first stage with the activation moved
    before it, then the next): A (h, w + 2P) -> B (H2, W2 + 2 P2). Along w, row m of T (h, W2) is the sum over
    input columns b of A[m, b] cw[b] (cw (w, W2) flat: the composite's transposed columns, nonzero only on [lo[b],
    hi[b])); along h, output row M is sum_q chc[M, q] T[chr_[M, q]] (chn[M] taps). Both composites are exact
    products of the stages' own zero-padded operators, so the map edges are those of the two-pass path. Flat uint64
    offsets: no wraparound checks, no slices, so the row loops vectorise."""
    u, zero = np.uint64, np.float32(0.0)
    W2, H2 = cw.shape[0] // w, chn.shape[0]
    _merged_w(A, h, w, P, cw, lo, hi, T)
    Wn = W2 + 2 * P2
    for M in range(H2):
        o = u(M * Wn)
        for i in range(P2):
            B[o + u(i)] = zero
            B[o + u(P2 + W2 + i)] = zero
        o += u(P2)
        k = chn[M]
        if k == 0:
            for i in range(W2):
                B[o + u(i)] = zero
            continue
        c0, r0 = chc[M, 0], u(chr_[M, 0] * W2)
        c1, r1 = (chc[M, 1], u(chr_[M, 1] * W2)) if k >= 2 else (zero, r0)
        for i in range(W2):
            B[o + u(i)] = c0 * T[r0 + u(i)] + c1 * T[r1 + u(i)]
        for q in range(2, k):
            cq, rq = chc[M, q], u(chr_[M, q] * W2)
            for i in range(W2):
                B[o + u(i)] += cq * T[rq + u(i)]


def _front_source(x, j, act, first, rs, pads, single, HD, HC, HN, VD, VC, VN, hsel, vsel, A, B, Tt, T, tmp, rows,
                  cs, g, add, mt):
    """Map x[j] through act (when `first`) and every stage but the last, act after each: (the buffer holding the
    last stage's input with pads[-1] zero columns each side (A or B), its height, its width, whether that plane was
    added to g). A stage whose outputs each read at most one input sample with one coefficient c (single[s, a, b] =
    c, a route stage with k <= r) gets act(c x) / c on its input instead of act on its r^2 times larger output (the
    same values: act(0) = 0). With `add`, the last activation also sums its output into g (_act_add). Where mt
    (merge tables: ok (nt, nt), cw, lo, hi, chr, chc, chn) allow it for the map's first-stage tables, the first two
    stages run as one (_merged)."""
    h, w, P = x.shape[1], x.shape[2], pads[0]
    Wp = w + 2 * P
    xj = x[j]
    added = False
    for m in range(h):
        for i in range(P):
            A[m * Wp + i] = np.float32(0.0)
            A[m * Wp + P + w + i] = np.float32(0.0)
        for i in range(w):
            A[m * Wp + P + i] = xj[m, i]
    if first:
        _act(A, h * Wp, act)
    ok, cw, lo, hi, chr_, chc, chn = mt
    s = 0
    while s < rs.shape[0] - 1:
        r, a, b = rs[s], hsel[s, j], vsel[s, j]
        c = single[s, a, b]
        if c != 0 and act != 0:
            n = h * (w + 2 * pads[s])
            for i in range(n):
                A[i] *= c
            _act(A, n, act)
            ic = np.float32(1.0) / c
            for i in range(n):
                A[i] *= ic
        if s == 0 and ok[a, b]:  # stages 0 and 1 as one linear map; the activation after stage 1 follows
            _merged(A, h, w, pads[0], cw[a], lo[a], hi[a], chr_[b], chc[b], chn[b], T, B, pads[2])
            h, w = h * r * rs[1], w * r * rs[1]
            s = 1
            c = np.float32(0.0)
        else:
            _wpass(A, h, w, pads[s], r, HD[s, a], HC[s, a], HN[s, a], Tt, T)
            _hpass(T, h, w, r, VD[s, b], VC[s, b], VN[s, b], 0, B, pads[s + 1], B, tmp, rows, cs)
            h, w = h * r, w * r
        added = False
        if c == 0:
            if add and s == rs.shape[0] - 2:
                _act_add(B, h * (w + 2 * pads[s + 1]), act, g)
                added = True
            else:
                _act(B, h * (w + 2 * pads[s + 1]), act)
        A, B = B, A
        s += 1
    return A, h, w, added


def _add_source(g, X, n):
    """g[:n] += X[:n]."""
    for i in range(n):
        g[i] += X[i]


def _chain_source(x, act, first, rs, pads, single, HD, HC, HN, VD, VC, VN, hsel, vsel, reduce, out, heat, gap, gsum,
                  used, tot, mt, A, B, Tt, T, U, tmp, rows, cs):
    """Every stage (rs[s], tap tables [s]) of every map x[j] (n, h, w), one map at a time in cache (_front, then
    the last stage); planes are held with pads[s] zero columns on each side. reduce=False: the last stage's maps
    into out (n, H W). reduce=True: heat (H W) += |y_j|, tot[j] = sum |y_j| (two maps at a time where they share
    the last stage's taps), and the signed sum of the maps by linearity: the last stage's inputs summed per tap
    selection in gsum (by the last activation in _front where it can), filtered once at the end into gap."""
    n = x.shape[0]
    s = rs.shape[0] - 1
    r, P = rs[s], pads[s]
    j = 0
    while j < n:
        a, b = hsel[s, j], vsel[s, j]
        g = gsum[a, b] if reduce else gsum[0, 0]  # the last activation sums into g (_act_add)
        X, h, w, added = _front(x, j, act, first, rs, pads, single, HD, HC, HN, VD, VC, VN, hsel, vsel, A, B, Tt, T,
                                tmp, rows, cs, g, reduce, mt)
        _wpass(X, h, w, P, r, HD[s, a], HC[s, a], HN[s, a], Tt, T)
        if not reduce:
            _hpass(T, h, w, r, VD[s, b], VC[s, b], VN[s, b], 0, out[j], 0, heat, tmp, rows, cs)
            j += 1
            continue
        _add(g, X, 0 if added else h * (w + 2 * P))
        used[a, b] = True
        pair = j + 1 < n and hsel[s, j + 1] == a and vsel[s, j + 1] == b
        for t in range(r):
            pair = pair and VN[s, b, t] <= 2
        if not pair:
            tot[j] = _hpass(T, h, w, r, VD[s, b], VC[s, b], VN[s, b], 1, B, 0, heat, tmp, rows, cs)
            j += 1
            continue
        X, h, w, added = _front(x, j + 1, act, first, rs, pads, single, HD, HC, HN, VD, VC, VN, hsel, vsel, A, B, Tt,
                                U, tmp, rows, cs, g, True, mt)
        _wpass(X, h, w, P, r, HD[s, a], HC[s, a], HN[s, a], Tt, U)
        _add(g, X, 0 if added else h * (w + 2 * P))
        tot[j], tot[j + 1] = _hpass_pair(T, U, h, w, r, VD[s, b], VC[s, b], VN[s, b], heat, rows, cs)
        j += 2
    if not reduce:
        return
    h, w = x.shape[1], x.shape[2]
    for q in range(s):
        h, w = h * rs[q], w * rs[q]
    for a in range(used.shape[0]):
        for b in range(used.shape[1]):
            if used[a, b]:
                _wpass(gsum[a, b], h, w, P, r, HD[s, a], HC[s, a], HN[s, a], Tt, T)
                _hpass(T, h, w, r, VD[s, b], VC[s, b], VN[s, b], 2, B, 0, gap, tmp, rows, cs)


_act, _act_add, _gelu1, _add = _act_source, _act_add_source, _gelu1_source, _add_source
_wpass2, _interleave, _wpass, _hpass = _wpass2_source, _interleave_source, _wpass_source, _hpass_source
_hpass_pair = _hpass_pair_source
_row_taps = _row_taps_source
_merged_w, _merged, _front = _merged_w_source, _merged_source, _front_source  # compiled before _chain_source


@functools.cache
def _chain_kernel():
    global _act, _act_add, _gelu1, _add, _wpass2, _interleave, _wpass, _hpass, _hpass_pair, _merged, _front
    global _row_taps, _merged_w
    # (module globals the callers resolve when they compile)
    _row_taps = _jit(_row_taps_source)
    _gelu1 = _jit(_gelu1_source)
    _act, _act_add, _add = _jit(_act_source), _jit(_act_add_source), _jit(_add_source)
    _wpass2, _interleave = _jit(_wpass2_source), _jit(_interleave_source)
    _wpass, _hpass, _hpass_pair = _jit(_wpass_source), _jit(_hpass_source), _jit(_hpass_pair_source)
    _merged_w = _jit(_merged_w_source)
    _merged = _jit(_merged_source)
    _front = _jit(_front_source)
    return _jit(_chain_source)


@functools.cache
def _pool(workers: int):
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xinc-kernel")


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    """Contiguous ranges covering [0, n), at most `parts` of them, none empty."""
    parts = max(1, min(parts, n))
    step = -(-n // parts)
    return [(a, min(n, a + step)) for a in range(0, n, step)]


jit = _jit  # public: other modules' compiled kernels (xinc.analysis.a2_kernels)
split = _split


def threads() -> int:
    """Worker threads the kernels split work over: torch's intra-op thread count (its pool is idle meanwhile)."""
    return max(1, torch.get_num_threads())


def map_ranges(parts: int, job) -> None:
    """Run job(i) for i in range(parts) on the kernel worker threads (inline when parts == 1)."""
    if parts <= 1:
        for i in range(parts):
            job(i)
        return
    list(_pool(parts).map(job, range(parts)))


def pack_taps(tables) -> tuple[np.ndarray, ...]:
    """Per-stage tap tables ((d (nt, r, T), c, count (nt, r)), ...) padded into (S, nt, r, T) arrays."""
    S = len(tables)
    NT, R, T = (max(t[0].shape[i] for t in tables) for i in range(3))
    d, c, cnt = np.zeros((S, NT, R, T), np.int64), np.zeros((S, NT, R, T), np.float32), np.zeros((S, NT, R), np.int64)
    for s, (ds, cs, ns) in enumerate(tables):
        nt, r, t = ds.shape
        d[s, :nt, :r, :t], c[s, :nt, :r, :t], cnt[s, :nt, :r] = ds, cs, ns
    return d, c, cnt


def _conv_source(up, W, bias, start, z):
    """z[n] = u_i * W[o, i] + bias[o] / C_in ('same' zero padding; up = u padded by k // 2 on each side) for the
    neurons k = start + n = i C_out + o: one map at a time, each tap one contiguous loop along a row."""
    cout, cin, K = W.shape[0], W.shape[1], W.shape[2]
    h, w = z.shape[1], z.shape[2]
    for n in range(z.shape[0]):
        i, o = (start + n) // cout, (start + n) % cout
        b = bias[o] / np.float32(cin)
        for y in range(h):
            row = z[n, y]
            for x in range(w):
                row[x] = b
            for dy in range(K):
                src = up[i, y + dy]
                for dx in range(K):
                    c, sx = W[o, i, dy, dx], src[dx:dx + w]
                    for x in range(w):
                        row[x] += c * sx[x]


@functools.cache
def _conv_kernel():
    return _jit(_conv_source)


def kernel_maps(u_padded: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, start: int, stop: int):
    """Per-kernel conv maps z_k = u_i * W[o, i] + b_o / C_in of neurons k = i C_out + o in [start, stop) for float32
    CPU tensors (u_padded: the layer input (C_in, h + k - 1, w + k - 1) with its 'same' zero padding): (n, h, w)."""
    k = weight.shape[-1]
    up = u_padded.detach().contiguous().numpy()
    z = np.empty((stop - start, up.shape[1] - k + 1, up.shape[2] - k + 1), np.float32)
    _conv_kernel()(up, weight.detach().contiguous().numpy(), bias.detach().contiguous().numpy(), start, z)
    return torch.from_numpy(z)


def _one_coef(c: np.ndarray, cnt: np.ndarray) -> float:
    """c when every phase of a 1-D tap table reads at most one sample, all with the same coefficient c; else 0."""
    vals = {float(c[t, 0]) for t in range(len(cnt)) if cnt[t] == 1}
    return vals.pop() if len(vals) == 1 and cnt.max() == 1 else 0.0


def _single_taps(rs: np.ndarray, HC: np.ndarray, HN: np.ndarray) -> np.ndarray:
    """(S, nt, nt) float32: c_h c_v where stage s with tables (a, b) maps each output to at most one input sample
    with that one coefficient (_front then applies the activation before the stage), else 0."""
    S, NT = HN.shape[:2]
    out = np.zeros((S, NT, NT), np.float32)
    for s in range(S):
        r = int(rs[s])
        one = [_one_coef(HC[s, a, :r], HN[s, a, :r]) for a in range(NT)]
        for a in range(NT):
            for b in range(NT):
                out[s, a, b] = one[a] * one[b]
    return out


def _stage_matrix(r: int, d: np.ndarray, c: np.ndarray, cnt: np.ndarray, n_in: int) -> np.ndarray:
    """The 1-D operator (r n_in, n_in) of one stage's tap table, out[r m + t] = sum_q c[t, q] in[m - d[t, q]] with
    taps outside the input skipped (the kernels' zero padding), in float64."""
    M = np.zeros((r * n_in, n_in))
    for m in range(n_in):
        for t in range(r):
            for q in range(int(cnt[t])):
                if 0 <= m - int(d[t, q]) < n_in:
                    M[r * m + t, m - int(d[t, q])] += float(c[t, q])
    return M


def merge_tables(rs: np.ndarray, taps, single: np.ndarray, code: int, hs: np.ndarray, vs: np.ndarray, h0: int,
                 w0: int) -> tuple:
    """Tables that let _front run stages 0 and 1 as one linear map (_merged): for maps whose first stage moves its
    activation before itself (single, or no activation), when the second stage keeps its own (not single) and
    uses table 0 for every map. (ok (nt, nt) per first-stage tables (a, b); cw (nt, w0 W2): the composite's
    transposed columns, nonzero on [lo, hi) (nt, w0); chr/chc (nt, H2, K), chn (nt, H2): each output row's input
    rows and weights). The composites are products of the stages' own operators, edges included. ok is all False
    (with dummy tables) when the stages cannot merge."""
    HD, HC, HN = taps
    NT = HD.shape[1]
    if len(rs) < 3 or hs[1].any() or vs[1].any() or (code != 0 and single[1, 0, 0] != 0):
        i1, f1 = np.zeros((1, 1), np.int64), np.zeros((1, 1), np.float32)
        return (np.zeros((NT, NT), np.bool_), f1, i1, i1, np.zeros((1, 1, 1), np.int64),
                np.zeros((1, 1, 1), np.float32), i1)
    key = (code, h0, w0) + tuple((a.shape, a.dtype.str, a.tobytes()) for a in (rs, HD, HC, HN, single))
    return _merge_cached(key, rs, taps, single, code, h0, w0)


_MERGE_CACHE: dict = {}


def _merge_cached(key, rs, taps, single, code: int, h0: int, w0: int) -> tuple:
    """merge_tables' composites, built once per chain and grid (a dict keyed by the tables' bytes; a few kB each)."""
    if key in _MERGE_CACHE:
        return _MERGE_CACHE[key]
    HD, HC, HN = taps
    NT = HD.shape[1]
    r0, r1 = int(rs[0]), int(rs[1])

    def composite(a: int, n0: int) -> np.ndarray:  # (n0 r0 r1, n0): stage 1 (table 0) after stage 0 (table a)
        return (_stage_matrix(r1, HD[1, 0], HC[1, 0], HN[1, 0], n0 * r0)
                @ _stage_matrix(r0, HD[0, a], HC[0, a], HN[0, a], n0))

    W2, H2 = w0 * r0 * r1, h0 * r0 * r1
    cw, lo, hi = np.zeros((NT, w0, W2), np.float32), np.zeros((NT, w0), np.int64), np.zeros((NT, w0), np.int64)
    chs = [composite(b, h0) for b in range(NT)]
    K = max(1, max(int((C != 0).sum(1).max()) for C in chs))
    chr_, chc, chn = np.zeros((NT, H2, K), np.int64), np.zeros((NT, H2, K), np.float32), np.zeros((NT, H2), np.int64)
    for a in range(NT):
        cw[a] = composite(a, w0).T
        for b in range(w0):
            nz = np.flatnonzero(cw[a, b])
            lo[a, b], hi[a, b] = (nz[0], nz[-1] + 1) if nz.size else (0, 0)
        for M in range(H2):
            nz = np.flatnonzero(chs[a][M])
            chn[a, M] = nz.size
            chr_[a, M, :nz.size], chc[a, M, :nz.size] = nz, chs[a][M, nz]
    ok = (single[0] != 0) if code != 0 else np.ones((NT, NT), np.bool_)
    if len(_MERGE_CACHE) >= 64:  # a handful of layers in practice; never unbounded
        _MERGE_CACHE.clear()
    _MERGE_CACHE[key] = ok, cw.reshape(NT, -1), lo, hi, chr_, chc, chn
    return _MERGE_CACHE[key]


def block_chain(x: torch.Tensor, act: str, first: bool, rs: np.ndarray, taps, hsel: torch.Tensor,
                vsel: torch.Tensor, reduce: bool = False, threads: int | None = None):
    """Every filter stage of the paper block rule for float32 CPU maps x (n, h, w), one map at a time in cache
    (see _chain_source). rs (S,) int64: each stage's upscaling; taps: pack_taps of the stages' tap tables;
    hsel/vsel (S, n): each map's table per stage; act in ACTS, applied to x when `first` and between stages.
    reduce=False: the maps (n, H, W). reduce=True: (heat, gap (H, W) float32, totals (n,) float64). Maps are split
    over `threads` worker threads (torch's thread count by default; the kernel drops the GIL, torch's pool idles)."""
    n, h0, w0 = x.shape
    HD, HC, HN = taps
    S, NT, T = len(rs), HD.shape[1], HD.shape[3]
    pads = np.abs(HD).reshape(S, -1).max(1)  # zero columns each side of a stage's input: every tap in range
    single = _single_taps(rs, HC, HN)
    hs, vs = (t.to(torch.int64).reshape(S, n).contiguous().numpy() for t in (hsel, vsel))
    code = ACTS[act]
    mt = merge_tables(rs, taps, single, code, hs, vs, h0, w0)
    dims = [(h0, w0)]
    for r in rs:
        dims.append((dims[-1][0] * int(r), dims[-1][1] * int(r)))
    (H, W), (h, w), r = dims[-1], dims[-2], int(rs[-1])
    plane = max(hh * (ww + 2 * int(p)) for (hh, ww), p in zip(dims[:-1], pads))  # a stage's padded input
    row = max(int(rr) * ww for (_, ww), rr in zip(dims[:-1], rs))  # a stage's output row
    inter = max(int(rr) * hh * ww for (hh, ww), rr in zip(dims[:-1], rs))  # a stage's along-w result
    xn = x.detach().contiguous().numpy()
    ranges = _split(n, threads or torch.get_num_threads())
    kern = _chain_kernel()
    tot = np.zeros(n, np.float64)
    out = np.empty((n, H * W) if not reduce else (1, 1), np.float32)
    accs = []

    def job(i: int) -> None:
        a, b = ranges[i]
        heat = np.zeros(H * W if reduce else 1, np.float32)
        gap = np.zeros_like(heat)
        gsum = np.zeros((NT, NT, h * (w + 2 * int(pads[-1]))) if reduce else (1, 1, 1), np.float32)
        used = np.zeros((NT, NT) if reduce else (1, 1), np.bool_)
        f32 = np.float32
        bufs = (np.empty(plane, f32), np.empty(plane, f32), np.empty((int(rs.max()), plane), f32), np.empty(inter, f32),
                np.empty(inter, f32), np.empty(row, f32), np.empty(T, np.int64), np.empty(T, f32))
        kern(xn[a:b], code, first, rs, pads, single, HD, HC, HN, HD, HC, HN, hs[:, a:b], vs[:, a:b], reduce, out[a:b],
             heat, gap, gsum, used, tot[a:b], mt, *bufs)
        accs.append((heat, gap))

    if len(ranges) == 1:
        job(0)
    else:
        list(_pool(len(ranges)).map(job, range(len(ranges))))
    if not reduce:
        return torch.from_numpy(out).view(n, H, W)
    heat, gap = accs[0]
    for hp, gp in accs[1:]:
        heat += hp
        gap += gp
    return torch.from_numpy(heat).view(H, W), torch.from_numpy(gap).view(H, W), torch.from_numpy(tot)


def activation(x: torch.Tensor, act: str) -> torch.Tensor:
    """The block kernel's compiled activation (ACTS) of a float32 CPU tensor, as a new tensor (for checks)."""
    _chain_kernel()
    v = x.detach().to(torch.float32).contiguous().reshape(-1).numpy().copy()
    _act(v, v.size, ACTS[act])
    return torch.from_numpy(v).view(x.shape)
