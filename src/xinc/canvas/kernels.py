"""Compiled CPU kernels (numba) for fused reductions that eager PyTorch can only do in several passes.

The MLP paper rule's heat map needs, for every pixel p, sum_i |phi(a_i(p) s_i + beta)| and the additive part
sum_i (a_i(p) s_i + beta). Eager PyTorch writes the (P, n) products, reads them to sum, rewrites them with
|phi(.)| and reads them again; this kernel reads `a` once and keeps everything in registers. It is exact to
float32 round-off like the eager path (sums are reassociated so they vectorise; products may use FMA).

Used only for float32 CPU tensors when numba imports; otherwise (CUDA, other dtypes, no numba) the rules
fall back to their PyTorch tiles. The first call in a process costs ~0.5-1 s (numba's start-up; the
machine code itself is cached on disk beside this module), which pays off from a few hundred calls on.
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
    opts = dict(nogil=True, fastmath={"reassoc", "contract"} if fastmath else False)
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


# ------------------------------------------------------------------ paper block rule: one filter stage per neuron


def _line_source(src, s0, dst, d0, n, ds, cs, cnt, reduce, heat, gap):  # noqa: C901 - one compiled kernel
    """y[i] = sum_q cs[q] src[s0 + i - ds[q]] for i in range(n) (every tap valid there): written to dst[d0 + i], or
    with reduce heat[d0 + i] += |y|, gap[d0 + i] += y and sum |y| returned (float32). One loop, taps in registers
    (1-3 taps; more accumulate in dst first)."""
    acc = np.float32(0.0)
    if cnt == 0:
        if not reduce:
            for i in range(n):
                dst[d0 + i] = np.float32(0.0)
        return acc
    a0, c0 = s0 - ds[0], cs[0]
    if cnt == 1:
        y0 = src[a0:a0 + n]
        if reduce:
            hr, gr = heat[d0:d0 + n], gap[d0:d0 + n]
            for i in range(n):
                y = c0 * y0[i]
                hr[i] += abs(y)
                gr[i] += y
                acc += abs(y)
        else:
            out = dst[d0:d0 + n]
            for i in range(n):
                out[i] = c0 * y0[i]
        return acc
    a1, c1 = s0 - ds[1], cs[1]
    y0, y1 = src[a0:a0 + n], src[a1:a1 + n]
    if cnt == 2:
        if reduce:
            hr, gr = heat[d0:d0 + n], gap[d0:d0 + n]
            for i in range(n):
                y = c0 * y0[i] + c1 * y1[i]
                hr[i] += abs(y)
                gr[i] += y
                acc += abs(y)
        else:
            out = dst[d0:d0 + n]
            for i in range(n):
                out[i] = c0 * y0[i] + c1 * y1[i]
        return acc
    a2, c2 = s0 - ds[2], cs[2]
    y2 = src[a2:a2 + n]
    out = dst[d0:d0 + n]
    for i in range(n):
        out[i] = c0 * y0[i] + c1 * y1[i] + c2 * y2[i]
    for q in range(3, cnt):
        aq, cq = s0 - ds[q], cs[q]
        yq = src[aq:aq + n]
        for i in range(n):
            out[i] += cq * yq[i]
    if reduce:
        hr, gr = heat[d0:d0 + n], gap[d0:d0 + n]
        for i in range(n):
            hr[i] += abs(out[i])
            gr[i] += out[i]
            acc += abs(out[i])
    return acc


def _pass_source(src, dst, h, w, d, c, cnt, along_w, reduce, heat, gap, sd, sc):
    """One 1-D tap pass over a whole (h, w) plane (flat src -> dst): y[m, l] = sum_q c[q] src[m, l - d[q]] along
    w, or src[m - d[q], l] along h; zero padding. The interior, where every tap is valid, is one flat _line; along
    h the edge rows use only their valid taps, along w the edge columns of every row are redone the same way
    (the flat loop wrapped them into the neighbouring row). Returns sum |y| (reduce; along h only)."""
    if cnt == 0:
        return _line(src, 0, dst, 0, h * w, d, c, 0, reduce, heat, gap)
    dmax, dmin = d[0], d[0]
    for q in range(cnt):
        dmax, dmin = max(dmax, d[q]), min(dmin, d[q])
    lo, hi = max(dmax, 0), (w if along_w else h) + min(dmin, 0)
    unit = 1 if along_w else w
    for q in range(cnt):
        sd[q] = d[q] * unit
    total = np.float64(0.0)
    if hi > lo:
        a, b = lo * unit, (h * w if along_w else hi * w) + (hi - w if along_w else 0)
        total += _line(src, a, dst, a, b - a, sd, c, cnt, reduce, heat, gap)
    L = w if along_w else h
    for e in range(L):  # an edge column (along w, in every row) or row (along h) with only its valid taps
        if lo <= e < hi:
            continue
        k = 0
        for q in range(cnt):
            if 0 <= e - d[q] < L:
                sd[k], sc[k] = d[q] * unit, c[q]
                k += 1
        if along_w:  # write mode only
            for m in range(h):
                y = np.float32(0.0)
                for q in range(k):
                    y += sc[q] * src[m * w + e - sd[q]]
                dst[m * w + e] = y
        else:
            total += _line(src, e * w, dst, e * w, w, sd, sc, k, reduce, heat, gap)
    return total


def _stage_source(x, r, hd, hc, hn, vd, vc, vn, hsel, vsel, reduce, out, heat, gap, tot):  # noqa: C901
    """One separable stage y_j = box_k(up_r or route_r(x_j)) for maps x (n, h, w), as 1-D taps per output phase:
    y[r m + t] = sum_q c[t, q] x[m - d[t, q]] (zero padding), along w with tap table hsel[j], then along h with
    vsel[j]. reduce=False writes y into out (n, r h, r w); reduce=True never writes y: heat += |y_j|, gap += y_j
    (phase planes (r, r, h w)) and tot[j] = sum |y_j| (float32 per line, float64 across). One map at a time,
    its planes in cache; each pass is a long contiguous loop with its taps in registers (_pass)."""
    n, h, w = x.shape
    P = h * w
    mid = np.empty((r, P), np.float32)  # along-w pass of one map: phase t2 plane
    Y = np.empty((r, P), np.float32)  # the map's phase planes of one output phase t1
    T = max(hd.shape[2], vd.shape[2])
    sd, sc = np.empty(T, np.int64), np.empty(T, np.float32)
    for j in range(n):
        a, b = hsel[j], vsel[j]
        xj = x[j].reshape(P)
        for t in range(r):
            _pass(xj, mid[t], h, w, hd[a, t], hc[a, t], hn[a, t], True, False, Y[0], Y[0], sd, sc)
        s = 0.0
        for t1 in range(r):
            for t2 in range(r):
                if reduce:
                    s += _pass(mid[t2], Y[t2], h, w, vd[b, t1], vc[b, t1], vn[b, t1], False, True,
                               heat[t1, t2], gap[t1, t2], sd, sc)
                else:
                    _pass(mid[t2], Y[t2], h, w, vd[b, t1], vc[b, t1], vn[b, t1], False, False, Y[t2], Y[t2], sd, sc)
            if reduce:
                continue
            for m in range(h):
                orow = out[j, r * m + t1]
                if r == 2:  # the common stride: a constant-factor interleave the compiler vectorises
                    y0, y1 = Y[0, m * w:(m + 1) * w], Y[1, m * w:(m + 1) * w]
                    for i in range(w):
                        orow[2 * i] = y0[i]
                        orow[2 * i + 1] = y1[i]
                else:
                    for t2 in range(r):
                        yr = Y[t2, m * w:(m + 1) * w]
                        for i in range(w):
                            orow[r * i + t2] = yr[i]
        if reduce:
            tot[j] = s


_line, _pass = _line_source, _pass_source  # replaced by their compiled versions before _stage_source compiles


@functools.cache
def _stage_kernel():
    global _line, _pass  # numba resolves these globals when it compiles the stage kernel
    _line = _jit(_line_source)
    _pass = _jit(_pass_source)
    return _jit(_stage_source)


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


def stage_filter(x: torch.Tensor, r: int, taps_h, taps_v, hsel: torch.Tensor, vsel: torch.Tensor,
                 reduce: bool = False, out: torch.Tensor | None = None, threads: int | None = None):
    """Apply one stage (see _stage_source) to float32 CPU maps x (n, h, w) with tap tables taps_* = (d (nt, r, T)
    int64, c (nt, r, T) float32, count (nt, r) int64). reduce=False: the maps (n, r h, r w) (into `out`).
    reduce=True: (heat, gap (r h, r w) float32, totals (n,) float64). Maps are split over `threads` worker
    threads (torch's thread count by default; the kernel drops the GIL and torch's pool is idle meanwhile)."""
    n, h, w = x.shape
    xn = x.detach().contiguous().numpy()
    hs, vs = hsel.to(torch.int64).contiguous().numpy(), vsel.to(torch.int64).contiguous().numpy()
    R1, R2 = r * h, r * w
    ranges = _split(n, threads or torch.get_num_threads())
    kern = _stage_kernel()
    if reduce:
        tot = np.empty(n, np.float64)
        accs = [(np.zeros((r, r, h * w), np.float32), np.zeros((r, r, h * w), np.float32)) for _ in ranges]
        dummy = np.empty((1, 1, 1), np.float32)

        def job(i: int) -> None:
            a, b = ranges[i]
            kern(xn[a:b], r, *taps_h, *taps_v, hs[a:b], vs[a:b], True, dummy, accs[i][0], accs[i][1], tot[a:b])
    else:
        res = x.new_empty(n, R1, R2) if out is None else out
        on = res.numpy()
        none, no_tot = np.empty((1, 1, 1), np.float32), np.empty(1, np.float64)

        def job(i: int) -> None:
            a, b = ranges[i]
            kern(xn[a:b], r, *taps_h, *taps_v, hs[a:b], vs[a:b], False, on[a:b], none, none, no_tot)
    if len(ranges) == 1:
        job(0)
    else:
        list(_pool(len(ranges)).map(job, range(len(ranges))))
    if not reduce:
        return res
    heat, gap = accs[0]
    for hp, gp in accs[1:]:
        heat += hp
        gap += gp
    def interleave(p):  # phase planes (r, r, h w) -> (r h, r w)
        return torch.from_numpy(p).view(r, r, h, w).permute(2, 0, 3, 1).reshape(R1, R2)

    return interleave(heat), interleave(gap), torch.from_numpy(tot)
