"""Compiled (numba) kernels of A2's streamed statistics: one fused loop per pass that reads each value once.

They compute exactly what the PyTorch reducers of xinc.analysis.distributed compute (the reference path,
used on CUDA, for other dtypes, without numba or with XINC_NUMBA=0), per pixel block in parallel worker
threads (xinc.canvas.kernels.map_ranges):
- log-bin indices come from tables over float32 bit patterns built *with the reference's own torch
  arithmetic* (`LogTable`), so a value lands in the same bin on both paths (no float64 log per value);
- the per-pixel top-k keeps a threshold (the k-th largest so far) and a 2k buffer per pixel: most values are
  rejected by one compare, a full buffer is cut back to its k largest by quickselect;
- counts are exact; float64 sums (H(p), histogram masses, the mass above τ) agree to round-off (summation order).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from xinc.canvas import kernels

SHIFT = 12  # table cell = float32 bit pattern >> SHIFT: 2^11 cells per octave (relative width <= 2^-11)
_MAXF = 0x7F7FFFFF  # largest finite float32 bit pattern
QUANTILES_PROBE = (0.5, 0.9)
_BLOCK = 64  # pixels per block: a block's per-pixel histogram rows stay in cache across a chunk's neurons


def usable(maps: torch.Tensor, dtype: torch.dtype = torch.float32) -> bool:
    """Whether the compiled path applies: numba on, CPU tensors of `dtype` (float32 maps)."""
    return kernels.available() and maps.device.type == "cpu" and maps.dtype == dtype


class LogTable:
    """Bin index of positive float32 values under a vectorised bin function `index` (torch, monotone).

    edges[b] = the smallest float32 bit pattern whose bin is >= b (found by bisection with `index` itself);
    cell[c] = the bin of the smallest value of table cell c. A value's bin: cell[bits >> SHIFT], then step
    past the edges inside its cell (at most one for bins wider than a cell).
    """

    def __init__(self, index, bins: int) -> None:
        b = torch.arange(1, bins, dtype=torch.int64)
        lo, hi = torch.ones_like(b), torch.full_like(b, _MAXF)  # index(lo) = 0 < b <= index(hi) = bins - 1
        while bool((hi - lo > 1).any()):
            mid = (lo + hi) // 2
            ok = index(mid.to(torch.int32).view(torch.float32)) >= b
            hi, lo = torch.where(ok, mid, hi), torch.where(ok, lo, mid)
        e = np.empty(bins + 1, np.int64)
        e[0], e[1:bins], e[bins] = 0, hi.numpy(), 1 << 40  # sentinel: no value passes the last edge
        self.edges = e
        starts = np.arange(0, (1 << 31) >> SHIFT, dtype=np.int64) << SHIFT
        self.cell = (np.searchsorted(e[1:bins], starts, side="right")).astype(np.int32)
        self.bins, self._nests = bins, {}

    def range_of(self, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The float32 bit patterns [low, high) of the positive values in bins b (any shape): the bin's edges
        (bin 0 starts at 1: zero is in no bin)."""
        b = np.asarray(b, np.int64)
        return np.maximum(self.edges[b], 1), np.minimum(self.edges[b + 1], 1 << 31)

    def nests(self, coarser: LogTable) -> int:
        """s when every bin of `coarser` is exactly 2^s of ours (bin >> s is its bin: checked edge by edge), else -1."""
        if id(coarser) not in self._nests:
            s = (self.bins // coarser.bins).bit_length() - 1
            ok = s >= 0 and coarser.bins << s == self.bins
            ok = ok and np.array_equal(coarser.edges[1:-1], self.edges[1 << s:-1:1 << s])
            self._nests[id(coarser)] = s if ok else -1
        return self._nests[id(coarser)]


# ----------------------------------------------------------------------------------------- compiled sources


def _bin_source(bits, cell, edges):
    i = cell[bits >> 12]
    while bits >= edges[i + 1]:
        i += 1
    return i


def _pass1_source(x, xi, p0, p1, heat, rmax, rmin, qc):
    """heat[p] += sum_j |x[j, p]| (float64, neuron order); per row j: max and smallest positive |x| (into rmax,
    rmin); qc[p, bits >> 21] += 1 per positive value (quarter-octave counts that bound each pixel's k-th largest)."""
    n = x.shape[0]
    for b0 in range(p0, p1, 64):
        b1 = min(p1, b0 + 64)
        for j in range(n):
            mx = rmax[j]
            mn = rmin[j]
            for p in range(b0, b1):
                v = abs(x[j, p])
                heat[p] += v
                mx = max(mx, v)
                bits = xi[j, p] & 0x7FFFFFFF
                if bits != 0:
                    mn = min(mn, v)
                    qc[p, bits >> 21] += 1
            rmax[j] = mx
            rmin[j] = mn


def _minmax_source(r, rmax, rmin, j):
    """rmax[j], rmin[j] = the largest and the smallest non-zero of the bit patterns r & 0x7FFFFFFF (|x|) and their
    old values (integer compares: vectorises)."""
    mx = rmax[j]
    mn = rmin[j]
    for i in range(r.shape[0]):
        bits = r[i] & 0x7FFFFFFF
        mx = max(mx, bits)
        mn = min(mn, bits if bits != 0 else 0x7FFFFFFF)
    rmax[j] = mx
    rmin[j] = mn


def _heat_source(x, xi, p0, p1, heat, rmax, rmin):
    """Pass 1 without the top-k: heat[p] += |x[j, p]| (float64, in neuron order: the same sums as _pass1_source, four
    rows per sweep of heat), and per row j the range of |x| (_minmax) while the four rows are still in cache. Each
    inner loop runs over a row view from 0, branch-free: they vectorise."""
    n = x.shape[0]
    h = heat[p0:p1]
    for j in range(0, n - 3, 4):
        a, b, c, d = x[j, p0:p1], x[j + 1, p0:p1], x[j + 2, p0:p1], x[j + 3, p0:p1]
        for i in range(h.shape[0]):
            h[i] = (((h[i] + np.float64(abs(a[i]))) + np.float64(abs(b[i]))) + np.float64(abs(c[i]))
                    + np.float64(abs(d[i])))
        for k in range(j, j + 4):
            _minmax(xi[k, p0:p1], rmax, rmin, k)
    for j in range(n - n % 4, n):
        a = x[j, p0:p1]
        for i in range(h.shape[0]):
            h[i] += np.float64(abs(a[i]))
        _minmax(xi[j, p0:p1], rmax, rmin, j)


def _floor_source(qc, k, out):
    """out[p] = the largest float32 below the start of the quarter-octave holding pixel p's k-th largest value
    (every value of its top-k is > out[p]); -1 when it has fewer than k positive values or the bin is the lowest."""
    for p in range(qc.shape[0]):
        c = 0
        out[p] = -1.0
        for b in range(qc.shape[1] - 1, 0, -1):
            c += qc[p, b]
            if c >= k:
                out[p] = np.nextafter(np.int32(b << 21).view(np.float32), np.float32(0.0))
                break


def _select_source(buf, n, k):
    """Reorder buf[:n] so that buf[:k] holds its k largest values (quickselect, descending)."""
    lo, hi = 0, n - 1
    while hi > lo:
        mid = (lo + hi) // 2
        a, b, c = buf[lo], buf[mid], buf[hi]
        piv = max(min(a, b), min(max(a, b), c))  # median of three
        i, j = lo, hi
        while i <= j:
            while buf[i] > piv:
                i += 1
            while buf[j] < piv:
                j -= 1
            if i <= j:
                t = buf[i]
                buf[i] = buf[j]
                buf[j] = t
                i += 1
                j -= 1
        if k - 1 <= j:
            hi = j
        elif k - 1 >= i:
            lo = i
        else:
            return


def _pass2_source(x, xi, p0, p1, thr, hpos, cov, ccell, cedges, cmass, ccount, pcell, pedges, pshift, phist, B,
                  top, fill, kth, k):  # noqa: C901 - one fused loop
    """Per pixel block, every neuron of the chunk: coverage counts, the coarse mass histogram, the per-pixel
    log histograms phist (P * B, 2) = (mass, count) side by side (one cache line per value; pixel bin = coarse
    bin >> pshift when the tables nest, else its own lookup) and the per-pixel top-k (threshold kth[p], buffer
    top[p], cut back to k when full)."""
    n = x.shape[0]
    cap = top.shape[1]
    for b0 in range(p0, p1, 64):
        b1 = min(p1, b0 + 64)
        for j in range(n):
            c = 0
            for p in range(b0, b1):
                v = abs(x[j, p])
                if v > thr[p] and hpos[p]:
                    c += 1
                bits = xi[j, p] & 0x7FFFFFFF
                if bits != 0:
                    w = np.float64(v)
                    i = _bin(bits, ccell, cedges)
                    cmass[i] += w
                    ccount[i] += 1
                    i = p * B + ((i >> pshift) if pshift >= 0 else _bin(bits, pcell, pedges))
                    phist[i, 0] += w
                    phist[i, 1] += 1.0
                if v > kth[p]:
                    f = fill[p]
                    top[p, f] = v
                    f += 1
                    if f == cap and cap > k:
                        row = top[p]
                        _select(row, cap, k)
                        m = row[0]
                        for t in range(1, k):
                            m = min(m, row[t])
                        kth[p] = m
                        f = k
                    fill[p] = f
            cov[j] += c


def _shares_source(x, xi, p0, p1, thr, cov, ccell, cedges, cmass):
    """Pass 2 without the top-k, row by row: the coverage count #{p : |x| > thr[p]} (branch-free, vectorises; where
    H(p) = 0 every |x| is 0, so no H > 0 test is needed) and the coarse mass histogram of the positive values, into
    four interleaved copies cmass[p & 3] (neighbouring pixels often share a bin: no chain of adds to one cell)."""
    n = x.shape[0]
    th = thr[p0:p1]
    for j in range(n):
        r = x[j, p0:p1]
        ri = xi[j, p0:p1]
        c = 0
        for i in range(r.shape[0]):
            c += abs(r[i]) > th[i]
        cov[j] += c
        for i in range(r.shape[0]):
            bits = ri[i] & 0x7FFFFFFF
            if bits != 0:
                cmass[i & 3, _bin(bits, ccell, cedges)] += np.float64(abs(r[i]))


def _sort_desc_source(a, lo, hi):
    """Insertion sort of a[lo:hi], descending (short runs)."""
    for i in range(lo + 1, hi):
        v = a[i]
        j = i - 1
        while j >= lo and a[j] < v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


def _needed_source(top, fill, p0, p1, kk, h, qs, need):  # noqa: C901 - one compiled kernel
    """need[l, p] = 1 + the first index where the running float64 sum of the kk largest of top[p, :fill[p]], in
    descending order, reaches (qs[l] h[p]) (1 - 1e-12); inf when none does, nan where h[p] = 0 (the reference's
    cumsum / compare / argmax). Pixels whose buffer cannot reach a level are settled by one sum; the others sort
    only the prefix they need, 32 values at a time (quickselect, then insertion sort)."""
    L = qs.shape[0]
    slack = 1.0 + 4.0 * (top.shape[1] + 1) * 2.3e-16  # bounds the sums' rounding in any order
    kcap = kk
    for p in range(p0, p1):
        row = top[p]
        n = fill[p]
        kk = min(kcap, n)  # = kcap: pass 1's floor admits at least min(k, neurons) values per pixel
        if not h[p] > 0:
            for lev in range(L):
                need[lev, p] = np.nan
            continue
        tot = 0.0
        for i in range(n):
            tot += np.float64(row[i])
        todo = 0
        for lev in range(L):
            need[lev, p] = np.inf
            if tot * slack >= (qs[lev] * h[p]) * (1 - 1e-12):
                todo += 1
        if todo == 0:
            continue  # the whole buffer (a superset of the top kk) falls short of every level
        if n > kk:
            _select(row, n, kk)
        e = min(kk, 32)  # the first 32 by quickselect + insertion sort; the rest, if needed, by one full sort
        if e < kk:
            _select(row, kk, e)
        _sort_desc(row, 0, e)
        if e < kk and not _prefix(row, 0, e, 0.0, p, h, qs, need, todo)[1] == 0:
            rest = np.sort(row[e:kk])[::-1]
            row[e:kk] = rest
        _prefix(row, 0, kk, 0.0, p, h, qs, need, todo)


def _prefix_source(row, i, e, cum, p, h, qs, need, todo):
    """Running float64 sum over row[i:e] (sorted descending): need[l, p] = 1 + the index where it first reaches
    (qs[l] h[p]) (1 - 1e-12); returns (the sum, levels still unresolved)."""
    for t in range(i, e):
        if todo == 0:
            break
        cum += np.float64(row[t])
        for lev in range(qs.shape[0]):
            if need[lev, p] == np.inf and cum >= (qs[lev] * h[p]) * (1 - 1e-12):
                need[lev, p] = t + 1.0
                todo -= 1
    return cum, todo


def _refine_source(x, xi, p0, p1, bl, bh, lo, span, S, mass, count):
    """Per level l: linear sub-bins of each pixel's own log bin, the float32 bit patterns [bl[l, p], bh[l, p])
    (its table edges: no lookup per value) = the values [lo[l, p], lo[l, p] + span[l, p]): mass and count
    (levels, P * S)."""
    n = x.shape[0]
    Q = bl.shape[0]
    for b0 in range(p0, p1, 64):
        b1 = min(p1, b0 + 64)
        for j in range(n):
            for p in range(b0, b1):
                bits = xi[j, p] & 0x7FFFFFFF
                for q in range(Q):
                    if bits < bl[q, p] or bits >= bh[q, p]:
                        continue
                    v = np.float64(abs(x[j, p]))
                    t = math.floor((v - lo[q, p]) / span[q, p] * S)
                    t = min(max(t, 0), S - 1)
                    mass[q, p * S + t] += v
                    count[q, p * S + t] += 1.0


def _pass3_source(x, xi, r0, r1, bl, bh, lo, span, S, fine, fmin):
    """Fine linear histograms (mass, smallest value) of the coarse bins [bl[l], bh[l]) (float32 bit patterns: the
    bins' table edges), rows r0..r1 of the chunk. With at most two levels, 32 values at a time are first tested
    branch-free (vectorised) and skipped together when none falls in either bin (most: the bins are narrow);
    the values are added in the same order either way."""
    L = bl.shape[0]
    P = x.shape[1]
    a0, h0, a1, h1 = np.int64(bl[0]), np.int64(bh[0]), np.int64(bl[L - 1]), np.int64(bh[L - 1])
    for j in range(r0, r1):
        ri = xi[j]
        for g in range(0, P, 32):
            e = min(P, g + 32)
            if L <= 2:
                seg = ri[g:e]
                hit = False
                for i in range(seg.shape[0]):
                    b = np.int64(seg[i] & 0x7FFFFFFF)
                    hit |= ((b >= a0) & (b < h0)) | ((b >= a1) & (b < h1))
                if not hit:
                    continue
            for p in range(g, e):
                bits = ri[p] & 0x7FFFFFFF
                for lev in range(L):
                    if bits < bl[lev] or bits >= bh[lev]:
                        continue
                    v = np.float64(abs(x[j, p]))
                    t = math.floor((v - lo[lev]) / span[lev] * S)
                    t = min(max(t, 0), S - 1)
                    fine[lev, t] += v
                    fmin[lev, t] = min(fmin[lev, t], v)


def _pass4_source(x, p0, p1, taus, cnt, above):
    """cnt[l, p] += #{j : |x[j, p]| > taus[l]}; above[l] += the mass of those values (float64)."""
    n = x.shape[0]
    for lev in range(taus.shape[0]):
        tau = taus[lev]
        s = 0.0
        for j in range(n):
            for p in range(p0, p1):
                v = abs(x[j, p])
                if v > tau:
                    cnt[lev, p] += 1
                    s += np.float64(v)
        above[lev] += s


def _pass4_pair_source(x, p0, p1, taus, cnt, above):
    """_pass4_source for two levels in one read of the chunk: the same per-level float64 sums in the same order
    (row by row, pixel by pixel; adding 0.0 for a value at or below τ leaves a sum unchanged), so the same bits."""
    t0, t1 = taus[0], taus[1]
    c0, c1 = cnt[0, p0:p1], cnt[1, p0:p1]
    s0, s1 = 0.0, 0.0
    for j in range(x.shape[0]):
        r = x[j, p0:p1]
        for i in range(r.shape[0]):
            v = abs(r[i])
            m0, m1 = v > t0, v > t1
            c0[i] += m0
            c1[i] += m1
            w = np.float64(v)
            s0 += w if m0 else 0.0
            s1 += w if m1 else 0.0
    above[0] += s0
    above[1] += s1


def _crossing_source(mass, count, B, p0, p1, target, m0, c0, b_out, m_out, c_out, n_out):
    """Per pixel p (histograms mass, count (P * B,)): the last bin b whose mass from the top plus m0[p] reaches
    target[p] (1 - 1e-12) (0 when none), the mass and count above it (plus m0, c0) and its count; the
    reference's flip / cumsum / compare, in its order."""
    for p in range(p0, p1):
        t = target[p] * (1 - 1e-12)
        cm = 0.0
        cc = 0.0
        b = -1
        ma, ca = 0.0, 0.0  # mass / count in the bins above the crossing one
        m1, c1 = 0.0, 0.0  # ... above bin 0
        for i in range(B - 1, -1, -1):
            pm, pc = cm, cc
            cm += mass[p * B + i]
            cc += count[p * B + i]
            if b < 0 and m0[p] + cm >= t:
                b, ma, ca = i, pm, pc
            if i == 0:
                m1, c1 = pm, pc
        if b < 0:  # no bin reaches: bin 0
            b, ma, ca = 0, m1, c1
        b_out[p] = b
        m_out[p] = m0[p] + (ma if b < B - 1 else 0.0)
        c_out[p] = c0[p] + (ca if b < B - 1 else 0.0)
        n_out[p] = count[p * B + b]


_bin, _select, _sort_desc, _prefix, _minmax = (_bin_source, _select_source, _sort_desc_source, _prefix_source,
                                               _minmax_source)  # compiled later


@functools.cache
def _compiled() -> dict:
    global _bin, _select, _sort_desc, _prefix, _minmax  # numba resolves these globals when compiling their callers
    _minmax = kernels.jit(_minmax_source, fastmath=False)
    _bin = kernels.jit(_bin_source, fastmath=False)
    _select = kernels.jit(_select_source, fastmath=False)
    _sort_desc = kernels.jit(_sort_desc_source, fastmath=False)
    _prefix = kernels.jit(_prefix_source, fastmath=False)
    src = {"pass1": _pass1_source, "heat": _heat_source, "floor": _floor_source, "pass2": _pass2_source,
           "shares": _shares_source,
           "refine": _refine_source, "pass3": _pass3_source, "pass4": _pass4_source, "pass4_pair": _pass4_pair_source,
           "needed": _needed_source, "crossing": _crossing_source}
    return {"select": _select, **{name: kernels.jit(fn, fastmath=False) for name, fn in src.items()}}


# ------------------------------------------------------------------------------------------- wrappers


def _np(maps: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(|.|-free) float32 (n, P) view of the maps and its int32 bit view."""
    x = maps.detach().reshape(maps.shape[0], -1).contiguous().numpy()
    return x, x.view(np.int32)


def _blocks(P: int) -> list[tuple[int, int]]:
    """Pixel ranges for the worker threads, cut at multiples of the kernel's block."""
    nb = -(-P // _BLOCK)
    return [(a * _BLOCK, min(P, b * _BLOCK)) for a, b in kernels.split(nb, kernels.threads())]


def pass1(maps: torch.Tensor, heat: np.ndarray, qc: np.ndarray) -> tuple[float, float, int]:
    """heat += sum_j |maps[j]| (float64), qc (P, 1024) += quarter-octave counts; returns (max |x|, smallest
    positive |x|, maps all zero)."""
    x, xi = _np(maps)
    rng = _blocks(x.shape[1])
    rmax = np.zeros((len(rng), x.shape[0]), np.float32)
    rmin = np.full((len(rng), x.shape[0]), np.inf, np.float32)
    k = _compiled()["pass1"]
    kernels.map_ranges(len(rng), lambda i: k(x, xi, *rng[i], heat, rmax[i], rmin[i], qc))
    mx = rmax.max(0)
    return float(mx.max()), float(rmin.min()), int((mx == 0).sum())


def heat(maps: torch.Tensor, h: np.ndarray) -> tuple[float, float, int]:
    """pass1 without the quarter-octave counts (the paper statistics only): h += sum_j |maps[j]| (float64, the same
    sums as pass1), returns (max |x|, smallest positive |x|, maps all zero) as pass1 does."""
    x, xi = _np(maps)
    rng = kernels.split(x.shape[1], kernels.threads())
    rmax = np.zeros((len(rng), x.shape[0]), np.int32)
    rmin = np.full((len(rng), x.shape[0]), 0x7FFFFFFF, np.int32)
    k = _compiled()["heat"]
    kernels.map_ranges(len(rng), lambda i: k(x, xi, *rng[i], h, rmax[i], rmin[i]))
    mx, mn = rmax.max(0), int(rmin.min())
    vmin = math.inf if mn == 0x7FFFFFFF else float(np.int32(mn).view(np.float32))
    return float(np.int32(mx.max()).view(np.float32)), vmin, int((mx == 0).sum())


def shares(maps: torch.Tensor, thr: np.ndarray, ctab: LogTable) -> tuple[np.ndarray, np.ndarray]:
    """Pass 2 of the paper statistics on one chunk (n, H, W): (coverage counts per neuron (n,) int64, i.e. shares
    |x| / H > 1/K with thr = H / K (float32), and the coarse mass histogram of its positive values (bins,) float64)."""
    x, xi = _np(maps)
    rng = kernels.split(x.shape[1], kernels.threads())
    cov = np.zeros((len(rng), x.shape[0]), np.int64)
    cmass = np.zeros((len(rng), 4, ctab.bins), np.float64)
    kern = _compiled()["shares"]
    kernels.map_ranges(len(rng), lambda i: kern(x, xi, *rng[i], thr, cov[i], ctab.cell, ctab.edges, cmass[i]))
    return cov.sum(0), cmass.sum((0, 1))


def quarter_counts(P: int, K: int) -> np.ndarray:
    """Zeroed (P, 1024) quarter-octave counts (uint16 while K < 2^16)."""
    return np.zeros((P, 1 << 10), np.uint16 if K < 1 << 16 else np.uint32)


def topk_floor(qc: np.ndarray, k: int) -> np.ndarray:
    """(P,) float32 admission thresholds of the per-pixel top-k (see _floor_source)."""
    out = np.empty(qc.shape[0], np.float32)
    _compiled()["floor"](qc, k, out)
    return out


class Pass2State:
    """One frame's compiled pass-2 state: per-pixel top-k buffers and histograms, per-thread coarse histograms."""

    def __init__(self, P: int, K: int, k: int, bins: int, pix_bins: int) -> None:
        """Buffers for P pixels, K neurons, top-k capacity k, coarse and per-pixel bin counts."""
        self.rng = _blocks(P)
        self.k, self.B, self.seen = k, pix_bins, 0
        self.top = np.empty((P, min(2 * k, K)), np.float32)
        self.fill = np.zeros(P, np.int64)
        self.kth = np.full(P, -1.0, np.float32)  # accept everything (zeros too) until a buffer first fills
        self.cmass = np.zeros((len(self.rng), bins), np.float64)
        self.ccount = np.zeros((len(self.rng), bins), np.int64)
        self.phist = np.zeros((P * pix_bins, 2), np.float64)  # (mass, count) side by side
        self.pmass, self.pcount = self.phist[:, 0], self.phist[:, 1]

    def reset(self, floor: np.ndarray | None = None) -> Pass2State:
        """Ready for the next frame, reusing the buffers (no new pages to fault in per frame); `floor`: the
        frame's admission thresholds from pass 1 (topk_floor), else everything is admitted until a buffer fills."""
        self.seen = 0
        self.fill[:] = 0
        self.kth[:] = -1.0 if floor is None else floor
        for a in (self.cmass, self.ccount, self.phist):
            a[...] = 0
        return self

    def update(self, maps: torch.Tensor, thr: np.ndarray, hpos: np.ndarray, ctab: LogTable,
               ptab: LogTable) -> np.ndarray:
        """Fold in one chunk of maps (n, H, W); returns its coverage counts per neuron (n,) int64."""
        x, xi = _np(maps)
        cov = np.zeros((len(self.rng), x.shape[0]), np.int64)
        kern = _compiled()["pass2"]
        shift = ctab.nests(ptab)

        def job(i: int) -> None:
            kern(x, xi, *self.rng[i], thr, hpos, cov[i], ctab.cell, ctab.edges, self.cmass[i], self.ccount[i],
                 ptab.cell, ptab.edges, shift, self.phist, self.B, self.top, self.fill, self.kth, self.k)

        kernels.map_ranges(len(self.rng), job)
        self.seen += x.shape[0]
        return cov.sum(0)

    def needed(self, h: torch.Tensor, qs: tuple[float, ...]) -> np.ndarray:
        """(levels, P) neurons needed per pixel (see _needed_source) from the top-k buffers and H (P,) float64."""
        kk = min(self.k, self.seen)
        out = np.empty((len(qs), self.top.shape[0]), np.float64)
        kern = _compiled()["needed"]
        args = (self.top, self.fill)
        kernels.map_ranges(len(self.rng), lambda i: kern(*args, *self.rng[i], kk, h.numpy(), np.array(qs), out))
        return out


def probe_topk(rows: int, k: int, seed: int = 0) -> tuple[float, float]:
    """Wall seconds per pixel of (one cut of a full 2k top-k buffer back to k, the end-of-frame neurons-needed
    of a full buffer whose top-k reaches both levels late: a select and a prefix sort of most of the k values),
    timed on `rows` pixels of random values."""
    import time

    rng = np.random.default_rng(seed)
    buf = rng.random((rows, 2 * k), dtype=np.float32)
    kern = _compiled()
    kern["select"](buf[0].copy(), 2 * k, k)  # compiled (or loaded) before the timing
    t0 = time.perf_counter()
    for p in range(rows):
        kern["select"](buf[p], 2 * k, k)
    t1 = time.perf_counter()
    buf = rng.random((rows, 2 * k), dtype=np.float32)
    fill, h = np.full(rows, 2 * k, np.int64), buf.sum(1, dtype=np.float64) * 0.75  # levels reached deep in the
    h[1::2] *= 4  # top-k at even pixels (a select and a full sort), out of reach at odd ones (one sum)
    out, qs = np.empty((2, rows)), np.array(QUANTILES_PROBE)
    kern["needed"](buf, fill, 0, 1, k, h, qs, out)
    t2 = time.perf_counter()
    kern["needed"](buf, fill, 1, rows, k, h, qs, out)
    return (t1 - t0) / rows, (time.perf_counter() - t2) / max(1, rows - 1)


def crossing(mass: torch.Tensor, count: torch.Tensor, target: torch.Tensor, above=None) -> tuple[torch.Tensor, ...]:
    """The compiled distributed._crossing_bins (same arguments, same results) for float64 CPU tensors."""
    P = target.numel()
    B = mass.numel() // P
    m0, c0 = (np.zeros(P), np.zeros(P)) if above is None else (above[0].numpy(), above[1].numpy())
    b, ma, ca, n = np.empty(P, np.int64), np.empty(P), np.empty(P), np.empty(P)
    rng = _blocks(P)
    kern = _compiled()["crossing"]
    args = (mass.numpy(), count.numpy(), B)
    kernels.map_ranges(len(rng), lambda i: kern(*args, *rng[i], target.numpy(), m0, c0, b, ma, ca, n))
    return tuple(torch.from_numpy(v) for v in (b, ma, ca, n))


def refine(maps: torch.Tensor, bits: tuple[np.ndarray, np.ndarray], lo: np.ndarray, span: np.ndarray,
           mass: np.ndarray, count: np.ndarray, S: int) -> None:
    """Add one chunk to every level's per-pixel linear sub-bin histograms (levels, P * S) of the bins whose
    bit-pattern ranges are bits = (low, high) (levels, P) (LogTable.range_of)."""
    x, xi = _np(maps)
    rng = _blocks(x.shape[1])
    kern = _compiled()["refine"]
    kernels.map_ranges(len(rng), lambda i: kern(x, xi, *rng[i], *bits, lo, span, S, mass, count))


def pass3(maps: torch.Tensor, ctab: LogTable, bracket: np.ndarray, lo: np.ndarray, span: np.ndarray, S: int,
          fine: np.ndarray, fmin: np.ndarray) -> None:
    """Add one chunk to the fine histograms (levels, S) of the coarse bins `bracket` (rows split over threads)."""
    x, xi = _np(maps)
    rng = kernels.split(x.shape[0], kernels.threads())
    parts = [(np.zeros_like(fine), np.full_like(fmin, np.inf)) for _ in rng]
    kern = _compiled()["pass3"]
    bl, bh = ctab.range_of(bracket)
    kernels.map_ranges(len(rng), lambda i: kern(x, xi, *rng[i], bl, bh, lo, span, S, *parts[i]))
    for f, m in parts:
        fine += f
        np.minimum(fmin, m, out=fmin)


def pass4(maps: torch.Tensor, taus: np.ndarray, cnt: np.ndarray) -> np.ndarray:
    """cnt (levels, P) += values above each τ per pixel; returns the mass above each τ (levels,) float64."""
    x, _ = _np(maps)
    rng = _blocks(x.shape[1])
    above = np.zeros((len(rng), taus.shape[0]), np.float64)
    kern = _compiled()["pass4_pair" if taus.shape[0] == 2 else "pass4"]  # (the same sums, one read for two levels)
    kernels.map_ranges(len(rng), lambda i: kern(x, *rng[i], taus, cnt, above[i]))
    return above.sum(0)
