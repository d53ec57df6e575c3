"""A2 — are representations distributed? (SPEC §4 A2), streamed in four passes over each layer.

With A_k = |C_k|, H(p) = Σ_k A_k(p), K neurons, P pixels:
- pixels per neuron: share s_k(p) = A_k(p)/H(p); neuron k covers p if s_k(p) > 1/K; sorted counts.
- neurons per pixel: one threshold τ_a per layer (pooled over the analysed frames) such that the
  values above τ_a hold (1 − a) of the layer's total |C| mass, a ∈ {0.1, 0.5};
  n(p) = #{k : A_k(p) > τ_a} / K.
- beyond the paper, opt-in (`neurons_needed`, `--option a2.neurons_needed=true`): per pixel, the fewest neurons
  whose largest contributions hold q of H(p), q ∈ {0.5, 0.9} ("neurons needed"): exact from a per-pixel top-k
  merge where the top k suffice, else bracketed [lower, upper] by two-level per-pixel histograms (one extra pass).
  Off (the default), the passes keep nothing per pixel beyond H and n(p): the top-k admission counts of pass 1,
  the top-k and per-pixel histograms of pass 2 and the refinement are skipped, and the paper statistics are
  the same (compiled kernels `heat` and `shares` instead of `pass1` and `pass2`).

Medians are numpy's (the mean of the two middle values for an even count); `median_lower_fraction`
is the lower middle value, which is what the original code reports. `all_zero_maps` counts the
(neuron, frame) maps that are zero at every pixel (dead neurons; they cover no pixel).
Figures: xinc.report.plots.a2.

Streams (nothing of size K x P is ever held): passes 1, 2, then 3 together with the refinement, then 4.
1. H per frame, the largest and smallest positive A (histogram range).
2. share counts per neuron; a mass histogram of all A on `bins` log-spaced bins; per-pixel top-k
   (k = min(K, topk); default topk = what fits `topk_mb` = 512 MB, 2048 at 128x256) kept by merging each
   chunk into the running top-k (torch.topk; compiled: a per-pixel threshold, buffer and quickselect).
3. inside the coarse bin where the cumulative mass from the top crosses (1 − a)·M, a fine linear
   histogram of `sub_bins` bins; τ_a = just below the smallest value of the fine bin at the crossing, so
   the values above τ_a hold at least (1 − a) of the mass, exceeding it by at most one fine bin
4. n(p) at τ_a and the exact mass above τ_a (reported beside the target 1 − a).
Neurons-needed is exact for every pixel whose top-k already holds q of H(p); for the others pass 2
also keeps per-pixel log histograms (mass, count) and the refinement (streamed with pass 3) splits each such
pixel's crossing bin into linear sub-bins: the count is then known up to the values sharing the crossing sub-bin.

Two implementations compute the same numbers: the PyTorch reducers below (the reference; CUDA, non-float32,
XINC_NUMBA=0) and compiled numba kernels (xinc.analysis.a2_kernels; float32 CPU maps), which read each value
once per pass, bin by float32 bit-pattern tables that reproduce the log bins exactly, keep the per-pixel top-k
by threshold + buffer + quickselect, and split pixels over worker threads. Counts, bins and the top-k are
identical; float64 sums (H, masses) agree to round-off (they add in another order).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from xinc.analysis import a2_kernels as a2k
from xinc.analysis.registry import (
    AnalysisContext,
    AnalysisResult,
    each_variant_layer,
    register_analysis,
    stream_tensors,
)
from xinc.canvas.reduce import Reducer
from xinc.errors import XincError

AID = "a2"
STREAMS = 4  # times distributed_stats streams each layer's canvases (the cost estimate's pass count)
MASS_LEVELS = (0.1, 0.5)
QUANTILES = (0.5, 0.9)


class _Pass1(Reducer):
    """H(p) per frame (float64), global max and min positive |C|; compiled: each pixel's top-k admission floor."""

    def __init__(self, topk: Callable[[int], int] | None = None) -> None:
        self.topk = topk  # k for P pixels (the compiled path bounds each pixel's k-th largest for pass 2)
        self.floor: dict[int, np.ndarray] = {}
        self._qc = None
        self.heat: dict[int, torch.Tensor] = {}
        self.vmax, self.vmin = 0.0, math.inf
        self.zero_maps = 0  # (neuron, frame) maps that are zero at every pixel
        self.maps = 0

    def begin_frame(self, info, frame):
        super().begin_frame(info, frame)
        self._h = None

    def update(self, start, maps):
        if a2k.usable(maps):  # compiled: H(p) summed in neuron order (float64), extremes, dead maps, one read
            if self._h is None:
                P = maps[0].numel()
                self._h = np.zeros(P, np.float64)
                if self.topk is not None and (self._qc is None or self._qc.shape[0] != P):
                    self._qc = a2k.quarter_counts(P, self.info.num_neurons)
                if self.topk is not None:
                    self._qc[...] = 0
            if self.topk is None:  # the paper statistics only: no quarter-octave counts (the top-k's floor)
                vmax, vmin, zero = a2k.heat(maps, self._h)
            else:
                vmax, vmin, zero = a2k.pass1(maps, self._h, self._qc)
            self.vmax, self.vmin = max(self.vmax, vmax), min(self.vmin, vmin)
            self.zero_maps, self.maps = self.zero_maps + zero, self.maps + int(maps.shape[0])
            return
        a = maps.abs()
        part = a.sum(0, dtype=torch.float64)
        self._h = part if self._h is None else self._h + part
        self.vmax = max(self.vmax, float(a.max()))
        self.zero_maps += int((a.flatten(1).amax(1) == 0).sum())
        self.maps += int(a.shape[0])
        pos = a[a > 0]
        if pos.numel():
            self.vmin = min(self.vmin, float(pos.min()))

    def end_frame(self):
        h = self._h
        if isinstance(h, np.ndarray):
            self.heat[self.frame] = torch.from_numpy(h).reshape(self.info.height, self.info.width)
            if self.topk is not None:
                self.floor[self.frame] = a2k.topk_floor(self._qc, self.topk(h.size))
        else:
            self.heat[self.frame] = h

    def result(self):
        return self


class _LogBins:
    """The coarse log-spaced bins over [lo, hi] shared by passes 2 and 3 (identical index arithmetic)."""

    def __init__(self, lo: float, hi: float, bins: int) -> None:
        self.lo, self.hi, self.bins = float(lo), float(max(hi, lo * (1 + 1e-6))), int(bins)
        self.l0 = math.log(self.lo)
        self.scale = self.bins / (math.log(self.hi) - self.l0)

    def index(self, v: torch.Tensor) -> torch.Tensor:
        """Bin of each positive value (float64 log), clamped to [0, bins)."""
        x = v.to(torch.float64, copy=True)  # one float64 temporary, transformed in place
        idx = x.log_().sub_(self.l0).mul_(self.scale).floor_().to(torch.int64)
        return idx.clamp_(0, self.bins - 1)

    @functools.cached_property
    def table(self) -> a2k.LogTable:
        """The same bins as float32 bit-pattern tables for the compiled kernels (built with `index` itself)."""
        return a2k.LogTable(self.index, self.bins)

    def edges(self, b: int) -> tuple[float, float]:
        lo = math.exp(self.l0 + b / self.scale) if b > 0 else self.lo
        hi = math.exp(self.l0 + (b + 1) / self.scale) if b < self.bins - 1 else self.hi
        return lo, hi


class _Pass2(Reducer):
    """Share counts per neuron and frame, coarse mass histogram; with `needed`, the per-pixel top-k of A and
    per-pixel histograms (neurons needed); without, only what the paper statistics need."""

    def __init__(self, heat: dict[int, torch.Tensor], bins: _LogBins, topk: int, pix_bins: _LogBins,
                 floor: dict[int, np.ndarray] | None = None, needed: bool = True) -> None:
        self.heat, self.bins, self.topk, self.pix, self.with_needed = heat, bins, topk, pix_bins, needed
        self.floor = floor or {}  # compiled path: per frame, each pixel's top-k admission threshold (pass 1)
        self.counts: dict[int, torch.Tensor] = {}
        self.needed: dict[int, dict[float, torch.Tensor]] = {}
        self.censored: dict[int, dict[float, int]] = {}
        self.crossing: dict[int, dict[float, tuple[torch.Tensor, ...]]] = {}  # censored pixels' histogram bin
        self.mass = None
        self.count = None
        self._spare = None  # the compiled state's buffers, reused from frame to frame

    def begin_frame(self, info, frame):
        super().begin_frame(info, frame)
        self.K = info.num_neurons
        self._c = torch.zeros(self.K, dtype=torch.int64)
        self._top = None
        self._pm = self._pc = None
        self._k = None

    def update(self, start, maps):
        if a2k.usable(maps):
            if self.with_needed:
                self._update_compiled(start, maps)
            else:
                self._update_shares(start, maps)
            return
        a = maps.abs().flatten(1)  # (n, P)
        h = self.heat[self.frame].reshape(-1).to(a.device)
        thr = (h / self.K).to(a.dtype)
        covered = (a > thr[None]) & (h[None] > 0)
        self._c[start:start + a.shape[0]] = covered.sum(1).cpu()
        pos = a[a > 0]
        if pos.numel():
            idx = self.bins.index(pos)
            m = torch.bincount(idx, weights=pos.to(torch.float64), minlength=self.bins.bins)
            self.mass = m if self.mass is None else self.mass + m.to(self.mass.device)
            if self.with_needed:  # (bin counts: only the neurons-needed path ever kept them)
                c = torch.bincount(idx, minlength=self.bins.bins)
                self.count = c if self.count is None else self.count + c.to(self.count.device)
        if self.with_needed:
            self._merge(a)
            self._pm, self._pc = _pixel_hist(a, self.pix, self._pm, self._pc)

    def _update_shares(self, start: int, maps: torch.Tensor) -> None:
        """The compiled paper-statistics pass: coverage counts and the coarse mass histogram, nothing per pixel."""
        if self._k is None:
            h = self.heat[self.frame].reshape(-1)
            self._thr, self._k = (h / self.K).to(torch.float32).numpy(), True
        if start + maps.shape[0] > self.K:
            raise ValueError(f"a2: more maps in frame {self.frame} than the layer's {self.K} neurons")
        cov, m = a2k.shares(maps, self._thr, self.bins.table)
        self._c[start:start + maps.shape[0]] = torch.from_numpy(cov)
        m = torch.from_numpy(m)
        self.mass = m if self.mass is None else self.mass + m

    def _update_compiled(self, start: int, maps: torch.Tensor) -> None:
        """The compiled path: one fused loop per pixel block (coverage, both histograms, top-k)."""
        if self._k is None:
            h = self.heat[self.frame].reshape(-1)
            self._thr, self._hpos = (h / self.K).to(torch.float32).numpy(), (h > 0).numpy()
            sp = self._spare
            same = sp is not None and sp.top.shape == (h.numel(), min(2 * self.topk, self.K))
            if not same:
                sp = a2k.Pass2State(h.numel(), self.K, self.topk, self.bins.bins, self.pix.bins)
            self._k = sp.reset(self.floor.get(self.frame))
        if self._k.seen + maps.shape[0] > self.K:
            raise ValueError(f"a2: more maps in frame {self.frame} than the layer's {self.K} neurons")
        cov = self._k.update(maps, self._thr, self._hpos, self.bins.table, self.pix.table)
        self._c[start:start + maps.shape[0]] = torch.from_numpy(cov)

    def _end_compiled(self) -> a2k.Pass2State:
        """Fold the compiled state's histograms into the reference path's fields; returns the state."""
        st, self._k = self._k, None
        self._spare = st
        m, c = torch.from_numpy(st.cmass.sum(0)), torch.from_numpy(st.ccount.sum(0))
        self.mass = m if self.mass is None else self.mass + m
        self.count = c if self.count is None else self.count + c
        self._pm, self._pc = torch.from_numpy(st.pmass), torch.from_numpy(st.pcount)
        return st

    def _merge(self, a: torch.Tensor) -> None:
        """Add (n, P) values to the per-pixel top-k: columns collect in a (P, 2k) buffer (the merge buffer
        topk_mb budgets) and torch.topk runs when it is full, so a merge costs ~2P per neuron however small
        the chunks are (merging every chunk into k costs P (k + n) per chunk)."""
        k, j = self.topk, 0
        if self._top is None:
            self._top, self._fill = a.new_empty(a.shape[1], min(2 * k, self.K)), 0
        while j < a.shape[0]:  # (the buffer holds every neuron when K <= 2k)
            m = min(a.shape[0] - j, self._top.shape[1] - self._fill)
            if m == 0:
                raise ValueError(f"a2: more maps in frame {self.frame} than the layer's {self.K} neurons")
            self._top[:, self._fill:self._fill + m] = a[j:j + m].t()
            self._fill, j = self._fill + m, j + m
            if self._fill == self._top.shape[1] and self._fill > k:
                self._top[:, :k] = torch.topk(self._top, k, dim=1, sorted=False).values
                self._fill = k

    def _final_top(self) -> torch.Tensor:
        """The per-pixel top min(k, neurons seen) values, sorted descending."""
        buf = self._top[:, :self._fill]
        return torch.topk(buf, min(self.topk, buf.shape[1]), dim=1, sorted=True).values

    def end_frame(self):
        self.counts[self.frame] = self._c
        if not self.with_needed:
            self._k = None
            return
        h = self.heat[self.frame].reshape(-1)
        need = self._needed(h)
        self.needed[self.frame], self.censored[self.frame] = {}, {}
        for q in QUANTILES:
            m = need[q].to(h.device)
            ok = torch.isfinite(m) | ~(h > 0)
            self.needed[self.frame][q] = m.reshape(self.info.height, self.info.width).cpu()
            self.censored[self.frame][q] = int((~ok & (h > 0)).sum())
            if self.censored[self.frame][q]:  # where the top-k falls short: the per-pixel histogram's crossing bin
                self.crossing.setdefault(self.frame, {})[q] = _crossing_bins(self._pm, self._pc, q * h)
        self._top = self._pm = self._pc = None

    def _needed(self, h: torch.Tensor) -> dict[float, torch.Tensor]:
        """Per pixel, 1 + the first index where the sorted top-k's running sum reaches q H(p) (inf: none; nan: H=0)."""
        if self._k is not None:  # compiled: the same float64 running sums and compares, in the same order
            return dict(zip(QUANTILES, torch.from_numpy(self._end_compiled().needed(h, QUANTILES)), strict=True))
        cum = self._final_top().to(torch.float64).cumsum(1)
        h = h.to(cum.device)
        out = {}
        for q in QUANTILES:
            reach = cum >= (q * h)[:, None] * (1 - 1e-12)
            m = reach.to(torch.int8).argmax(1).to(torch.float64) + 1  # first index that reaches q*H
            m = torch.where(reach.any(1), m, torch.full_like(m, math.inf))
            out[q] = torch.where(h > 0, m, torch.full_like(m, math.nan))
        return out

    def result(self):
        return self


def _pixel_hist(a: torch.Tensor, bins: _LogBins, mass, count, sel: torch.Tensor | None = None,
                sub: tuple[torch.Tensor, torch.Tensor, int] | None = None):
    """Add (n, P) values to per-pixel histograms (P * B,) of mass and count (float64).

    Log bins of `bins`; with `sub` = (lo (P,), hi (P,), S), linear sub-bins of each pixel's own
    interval [lo, hi) restricted to the values whose log bin equals `sel` (P,).
    """
    n, P = a.shape
    keep = a > 0
    if sub is None:
        B = bins.bins
        idx = bins.index(a.clamp_min(bins.lo))
    else:
        lo, hi, B = sub
        keep &= bins.index(a.clamp_min(bins.lo)) == sel[None].to(a.device)
        span = (hi - lo).clamp_min(1e-300).to(a.device)
        x = a.to(torch.float64, copy=True)
        idx = x.sub_(lo.to(a.device)[None]).div_(span[None]).mul_(B).floor_().to(torch.int64)
        idx = idx.clamp_(0, B - 1)
    flat = idx.add_(torch.arange(0, P * B, B, device=a.device)[None])[keep]  # pixel p's bins start at p * B
    w = a[keep].to(torch.float64)
    if mass is None:  # allocated once per frame; later chunks add in place (no (P * B,) temporaries per chunk)
        mass = torch.zeros(P * B, dtype=torch.float64, device=a.device)
        count = torch.zeros(P * B, dtype=torch.float64, device=a.device)
    mass.index_add_(0, flat, w)
    count.index_add_(0, flat, torch.ones_like(w))
    return mass, count


def _crossing_bins(mass: torch.Tensor, count: torch.Tensor, target: torch.Tensor, above=None):
    """Per pixel, the histogram bin where the mass from the top reaches `target`; and what lies above it.

    mass, count: (P * B,) flattened per-pixel histograms. `above` = (mass, count) (P,) already held
    above the histogram (for sub-bins). Returns (bin (P,), mass above the bin, count above the bin,
    count in the bin).
    """
    if a2k.usable(mass, torch.float64):
        return a2k.crossing(mass, count, target, above)
    P = target.numel()
    m, c = mass.view(P, -1), count.view(P, -1)
    cm = m.flip(1).cumsum(1).flip(1)  # cm[:, b] = mass in bins >= b
    cc = c.flip(1).cumsum(1).flip(1)
    m0, c0 = (torch.zeros(P, dtype=torch.float64, device=m.device),) * 2 if above is None else above
    reach = (m0[:, None] + cm) >= (target.to(m.device) * (1 - 1e-12))[:, None]
    b = (reach.sum(1) - 1).clamp_(0, m.shape[1] - 1)
    nxt = (b + 1).clamp_max(m.shape[1] - 1)
    top = b == m.shape[1] - 1
    m_above = m0 + torch.where(top, torch.zeros_like(m0), cm.gather(1, nxt[:, None])[:, 0])
    c_above = c0 + torch.where(top, torch.zeros_like(c0), cc.gather(1, nxt[:, None])[:, 0])
    return b, m_above, c_above, c.gather(1, b[:, None])[:, 0]


class _PassRefine(Reducer):
    """Neurons-needed bounds for pixels the top-k could not resolve: sub-histograms of their crossing bin."""

    def __init__(self, crossing: dict[int, dict[float, tuple]], pix_bins: _LogBins, sub: int,
                 heat: dict[int, torch.Tensor]) -> None:
        self.crossing, self.pix, self.sub = crossing, pix_bins, sub
        self.target = {f: h.reshape(-1) for f, h in heat.items()}
        self.bounds: dict[int, dict[float, tuple[torch.Tensor, torch.Tensor]]] = {}
        self._spare = None  # compiled path: the (levels, P * sub) histograms, reused from frame to frame

    def begin_frame(self, info, frame):
        super().begin_frame(info, frame)
        self._h, self._arr = {}, None
        for q, (b, _, _, _) in self.crossing.get(frame, {}).items():
            lo = torch.exp(self.pix.l0 + b.to(torch.float64) / self.pix.scale)
            hi = torch.exp(self.pix.l0 + (b + 1).to(torch.float64) / self.pix.scale)
            lo = torch.where(b == 0, torch.full_like(lo, self.pix.lo), lo)
            hi = torch.where(b == self.pix.bins - 1, torch.full_like(hi, self.pix.hi), hi)
            self._h[q] = [lo, hi, None, None]

    def update(self, start, maps):
        if not self._h:
            return
        if a2k.usable(maps):  # every level in one read of the chunk
            if self._arr is None:
                self._arr = self._compiled_state()
            a2k.refine(maps, *self._arr, self.sub)
            return
        a = maps.abs().flatten(1)
        for q, st in self._h.items():
            b = self.crossing[self.frame][q][0]
            st[2], st[3] = _pixel_hist(a, self.pix, st[2], st[3], sel=b, sub=(st[0], st[1], self.sub))

    def _compiled_state(self) -> tuple[np.ndarray, ...]:
        """((low, high) bit patterns of each pixel's crossing bin, lo, span, mass, count), each (levels, ...), for
        a2k.refine; the histograms are zeroed views that the levels' entries of self._h share."""
        qs = list(self._h)
        n = self._h[qs[0]][0].numel() * self.sub
        if self._spare is None or self._spare[0].shape != (len(qs), n):
            self._spare = (np.empty((len(qs), n)), np.empty((len(qs), n)))
        m, c = self._spare
        m[...] = 0
        c[...] = 0
        for i, q in enumerate(qs):
            self._h[q][2:4] = torch.from_numpy(m[i]), torch.from_numpy(c[i])
        sel = np.stack([self.crossing[self.frame][q][0].numpy() for q in qs])
        lo = np.stack([self._h[q][0].numpy() for q in qs])
        span = np.stack([(self._h[q][1] - self._h[q][0]).clamp_min(1e-300).numpy() for q in qs])
        return self.pix.table.range_of(sel), lo, span, m, c

    def end_frame(self):
        for q, (_, _, m, c) in self._h.items():
            b, m_above, c_above, _ = self.crossing[self.frame][q]
            target = self.target[self.frame] * q
            _, _, c_in_above, c_in = _crossing_bins(m, c, target, above=(m_above, c_above))
            self.bounds.setdefault(self.frame, {})[q] = (c_in_above + 1, c_in_above + c_in.clamp_min(1))
        self._h = {}

    def result(self):
        return self


class _Pass3(Reducer):
    """Fine linear histograms inside the coarse bracket bins (one per mass level)."""

    def __init__(self, bins: _LogBins, brackets: dict[float, int], sub_bins: int) -> None:
        self.bins, self.brackets, self.sub = bins, brackets, sub_bins
        self._fine = np.zeros((len(brackets), sub_bins), np.float64)  # both paths write through these views
        self._fmin = np.full((len(brackets), sub_bins), math.inf, np.float64)
        self.fine = {a: torch.from_numpy(self._fine[i]) for i, a in enumerate(brackets)}
        self.fmin = {a: torch.from_numpy(self._fmin[i]) for i, a in enumerate(brackets)}
        lo_hi = [bins.edges(b) for b in brackets.values()]
        self._arr = (np.array(list(brackets.values()), np.int64), np.array([lo for lo, _ in lo_hi]),
                     np.array([hi - lo for lo, hi in lo_hi]))

    def update(self, start, maps):
        if a2k.usable(maps):
            a2k.pass3(maps, self.bins.table, *self._arr, self.sub, self._fine, self._fmin)
            return
        a = maps.abs().reshape(-1)
        pos = a[a > 0]
        if not pos.numel():
            return
        idx = self.bins.index(pos)
        for lev, b in self.brackets.items():
            v = pos[idx == b].to(torch.float64)
            if not v.numel():
                continue
            lo, hi = self.bins.edges(b)
            j = ((v - lo) / (hi - lo) * self.sub).floor().to(torch.int64).clamp_(0, self.sub - 1)
            self.fine[lev].add_(torch.bincount(j, weights=v, minlength=self.sub).cpu())
            self.fmin[lev].scatter_reduce_(0, j.cpu(), v.cpu(), reduce="amin")

    def result(self):
        return self


class _Pass4(Reducer):
    """n(p) = #{k : A_k(p) > τ_a} per frame and the exact mass above each τ_a."""

    def __init__(self, taus: dict[float, float]) -> None:
        self.taus = taus
        self.n: dict[int, dict[float, torch.Tensor]] = {}
        self.above = dict.fromkeys(taus, 0.0)

    def begin_frame(self, info, frame):
        super().begin_frame(info, frame)
        self._n = {}

    def update(self, start, maps):
        if a2k.usable(maps):  # compared in float32 like the reference (a float32 tensor > a Python float)
            if not self._n:
                self._cnt = np.zeros((len(self.taus), maps[0].numel()), np.int64)
                self._n = {lev: torch.from_numpy(self._cnt[i]).view(maps.shape[1:]) for i, lev in enumerate(self.taus)}
            above = a2k.pass4(maps, np.array(list(self.taus.values()), np.float32), self._cnt)
            for i, lev in enumerate(self.taus):
                self.above[lev] += float(above[i])
            return
        a = maps.abs()
        for lev, tau in self.taus.items():
            over = a > tau
            cnt = over.sum(0)
            self._n[lev] = cnt if lev not in self._n else self._n[lev] + cnt
            self.above[lev] += float((a * over).sum(dtype=torch.float64))

    def end_frame(self):
        self.n[self.frame] = {lev: v.cpu() for lev, v in self._n.items()}

    def result(self):
        return self


def _crossing(mass_desc_cum: np.ndarray, target: float) -> int:
    """Index of the first entry of a descending cumulative mass that reaches target."""
    return int(min(np.searchsorted(mass_desc_cum, target, side="left"), len(mass_desc_cum) - 1))


def topk_for(num_pixels: int, topk: int | None = None, topk_mb: float = 512.0) -> int:
    """Per-pixel top-k capacity: `topk` if given, else what fits `topk_mb` (k values + a merge buffer per pixel)."""
    if topk:
        return max(1, int(topk))
    return max(16, int(topk_mb * 2**20 / (4 * 2 * max(1, num_pixels))))


def distributed_stats(stream: Callable[[list], Any], *, bins: int = 2048, sub_bins: int = 8192,
                      topk: int | None = None, topk_mb: float = 512.0, neurons_needed: bool = False,
                      levels: tuple[float, ...] = MASS_LEVELS) -> dict[str, Any]:
    """All A2 statistics of one layer; `stream(reducers)` must drive the reducers over every frame once.

    neurons_needed: also the beyond-the-paper "neurons needed" per pixel (per-pixel top-k merge, per-pixel
    histograms, a refinement; several times the cost of the paper statistics). topk: per-pixel capacity of its
    exact merge (default: what fits topk_mb MB).
    """
    p1 = _Pass1(functools.partial(topk_for, topk=topk, topk_mb=topk_mb) if neurons_needed else None)
    stream([p1])
    p1._qc = None  # buffers reused from frame to frame are freed once their pass is over
    frames = sorted(p1.heat)
    total = float(sum(float(h.sum()) for h in p1.heat.values()))
    out: dict[str, Any] = {"frames": frames, "total_mass": total, "all_zero_maps": p1.zero_maps,
                           "num_maps": p1.maps}
    if total <= 0 or not math.isfinite(p1.vmin):
        out["empty"] = True
        return out
    topk = topk_for(p1.heat[frames[0]].numel(), topk, topk_mb)
    lb = _LogBins(p1.vmin, p1.vmax, bins)
    P = p1.heat[frames[0]].numel()
    pb = pixel_bins_for(P, topk_mb)
    lbp = _LogBins(p1.vmin, p1.vmax, pb)
    p2 = _Pass2(p1.heat, lb, topk, lbp, p1.floor, needed=neurons_needed)
    stream([p2])
    p2._spare = None
    K = p2.K
    mass = p2.mass.cpu().numpy()
    desc = np.cumsum(mass[::-1])  # mass held by the top bins, from the top
    brackets, cum_above = {}, {}
    for a in levels:
        target = (1 - a) * float(mass.sum())
        j = _crossing(desc, target)
        b = bins - 1 - j
        brackets[a] = b
        cum_above[a] = (float(desc[j - 1]) if j > 0 else 0.0, target)
    p3 = _Pass3(lb, brackets, sub_bins)
    pr = _PassRefine(p2.crossing, lbp, pb, p1.heat) if p2.crossing else None  # pixels the top-k cannot resolve
    stream([p3] + ([pr] if pr else []))  # both need only pass 2: one stream
    if pr:
        pr._spare = None
    taus, tau_info = {}, {}
    for a, b in brackets.items():
        above_bin, target = cum_above[a]
        fine = p3.fine[a].numpy()
        fdesc = above_bin + np.cumsum(fine[::-1])
        j = _crossing(fdesc, target)
        s = sub_bins - 1 - j
        lo, hi = lb.edges(b)
        w = (hi - lo) / sub_bins
        vmin = float(p3.fmin[a][s])  # smallest value in the crossing sub-bin: everything >= it is kept
        taus[a] = float(np.nextafter(np.float32(vmin), np.float32(0))) if math.isfinite(vmin) else lo + s * w
        tau_info[a] = {"tau": taus[a], "bracket": [lo + s * w, lo + (s + 1) * w], "coarse_bin": [lo, hi]}
    p4 = _Pass4(taus)
    stream([p4])
    counts = torch.stack([p2.counts[f] for f in frames]).to(torch.float64)  # (T, K)
    ppn = (counts.sum(0) / (len(frames) * P)).numpy()  # fraction of pixels each neuron covers
    out.update({
        "num_neurons": K, "num_pixels": P,
        "pixels_per_neuron": {"fraction_sorted": np.sort(ppn)[::-1], "median_fraction": float(np.median(ppn)),
                              "median_lower_fraction": lower_median(ppn),
                              "mean_fraction": float(ppn.mean()), "fraction_neurons_covering_none":
                              float((ppn == 0).mean()), "counts_per_frame": counts.to(torch.int64).numpy()},
        "thresholds": {}, "neurons_per_pixel": {}, "neurons_needed": dict(NOT_COMPUTED),
        "maps": {"n": {a: {f: (p4.n[f][a].to(torch.float64) / K).numpy() for f in frames} for a in levels}},
        "method": {"tau": f"log histogram ({bins} bins) + linear refinement ({sub_bins} sub-bins) of the crossing "
                          "bin; exact mass above τ measured in a 4th pass"},
    })
    for a in levels:
        held = p4.above[a] / total
        nmap = np.stack([out["maps"]["n"][a][f] for f in frames])
        out["thresholds"][str(a)] = {**tau_info[a], "mass_above": held, "target_mass_above": 1 - a}
        out["neurons_per_pixel"][str(a)] = {"mean_fraction": float(nmap.mean()), "median_fraction":
                                            float(np.median(nmap)), "max_fraction": float(nmap.max())}
    if neurons_needed:
        _needed_results(out, p2, pr.bounds if pr else {}, topk, pb)
    return out


NOT_COMPUTED = {"computed": False, "note": "neurons needed per pixel (beyond the paper) was not computed: it is "
                "off by default (several times the cost of the paper statistics); turn it on with "
                "--option a2.neurons_needed=true"}


def _needed_results(out: dict[str, Any], p2: _Pass2, bounds: dict, topk: int, pb: int) -> None:
    """Add the neurons-needed maps ([lower, upper] per pixel), per-level summaries and method to `out`."""
    frames, K, P = out["frames"], out["num_neurons"], out["num_pixels"]
    needed_lo, needed_hi = {}, {}
    for q in QUANTILES:
        needed_lo[q], needed_hi[q] = {}, {}
        for f in frames:
            m = p2.needed[f][q].reshape(-1).clone()
            lo, hi = m.clone(), m.clone()
            if f in bounds and q in bounds[f]:
                cens = torch.isinf(m)
                blo, bhi = (v.cpu().to(torch.float64) for v in bounds[f][q])
                lo[cens], hi[cens] = blo[cens], bhi[cens]
            needed_lo[q][f] = lo.reshape(p2.needed[f][q].shape).numpy()
            needed_hi[q][f] = hi.reshape(p2.needed[f][q].shape).numpy()
    out["maps"].update({"needed": needed_lo, "needed_upper": needed_hi})
    out["method"]["neurons_needed"] = (f"exact per-pixel top-k merge, k = min(K, {topk}); pixels needing more are "
                                       f"bracketed [lower, upper] by per-pixel histograms ({pb} log bins, then {pb} "
                                       "linear sub-bins of the crossing bin, one extra pass)")
    out["neurons_needed"] = {}
    kcap = min(K, topk)
    for q in QUANTILES:
        lo = np.concatenate([needed_lo[q][f].ravel() for f in frames])
        hi = np.concatenate([needed_hi[q][f].ravel() for f in frames])
        ok = ~np.isnan(lo)
        lo, hi = lo[ok], hi[ok]
        exact = np.isfinite(lo) & (lo == hi)
        med_lo = float(np.median(lo)) if lo.size else math.nan
        med_hi = float(np.median(hi)) if hi.size else math.nan
        med = med_lo if med_lo == med_hi and math.isfinite(med_lo) else None
        out["neurons_needed"][str(q)] = {
            "median": med, "median_fraction": med / K if med is not None else None,
            "median_bounds": [_fin(med_lo), _fin(med_hi)], "median_bounds_fraction": [_fin(med_lo / K),
                                                                                     _fin(med_hi / K)],
            "exact_fraction": float(exact.mean()) if lo.size else None,
            "censored_fraction": float(np.mean([p2.censored[f][q] for f in frames]) / P), "cap": kcap,
            "max_bracket_width": _fin(float(np.max(hi - lo))) if lo.size else None}


def lower_median(x: np.ndarray) -> float:
    """The lower middle value of x (the original code's median); np.median averages the two middle ones."""
    v = np.sort(np.ravel(x))
    return float(v[(v.size - 1) // 2]) if v.size else math.nan


def _fin(v: float) -> float | None:
    return v if math.isfinite(v) else None


def pixel_bins_for(num_pixels: int, topk_mb: float = 512.0) -> int:
    """Bins of the per-pixel histograms (mass + count, float64) that fit topk_mb: 16..256."""
    return int(min(256, max(16, topk_mb * 2**20 / (16 * max(1, num_pixels)))))


def work_seconds(num_neurons: int, height: int, width: int, num_frames: int, *, topk: int | None = None,
                 topk_mb: float = 512.0, neurons_needed: bool = False, device: torch.device | str = "cpu") -> float:
    """Estimated seconds of A2's own work on one layer (its reducers' updates in every pass; with neurons_needed
    also the top-k merges and the refinement pass, assumed needed), from a probe on this machine; the canvases
    are not included."""
    k = topk_for(height * width, topk, topk_mb)
    if not neurons_needed:
        per_map, per_frame, _, _ = _probe(False, height, width, k, topk_mb, str(device), needed=False)
        return (per_map * num_neurons + per_frame) * num_frames
    per_map, per_frame, per_cut, final = _probe(num_neurons > k, height, width, k, topk_mb, str(device))
    per_frame += final * min(1.0, num_neurons / k)  # the end-of-frame select + sort grows with min(K, k)
    # compiled top-k: pass 1's floor admits about k + a quarter-octave's share of values per pixel, so a 2k
    # buffer is rarely cut back to k (never on bunny block1: 2,373 of 18,352 admitted on average); counted
    # as a quarter cut per pixel where K > 2k
    cuts = 0.25 if num_neurons > 2 * k else 0.0
    return (per_map * num_neurons + per_frame + per_cut * cuts) * num_frames


def work_with_options(opts: DistributedOptions | None, num_neurons: int, height: int, width: int, num_frames: int,
                      device: torch.device | str = "cpu") -> tuple[float, float]:
    """(estimated seconds of A2's own work on one layer with these options, the seconds that turning on
    a2.neurons_needed would add: 0 when it is on) for the cost lines of `xinc analyze`."""
    o = opts or DistributedOptions()
    kw = dict(topk=o.topk, topk_mb=o.topk_mb, device=device)
    secs = work_seconds(num_neurons, height, width, num_frames, neurons_needed=o.neurons_needed, **kw)
    if o.neurons_needed:
        return secs, 0.0
    return secs, max(0.0, work_seconds(num_neurons, height, width, num_frames, neurons_needed=True, **kw) - secs)


@functools.lru_cache(maxsize=16)
def _probe(merges: bool, height: int, width: int, k: int, topk_mb: float, device: str, needed: bool = True,
           probe_maps: int = 32) -> tuple[float, float, float, float]:
    """(wall seconds per map, per frame, per top-k buffer cut, per frame's neurons-needed select + sort at K >= k)
    of every A2 pass: each reducer updated twice with
    `probe_maps` random maps in its second frame (the first update also pays the frame's set-up; pass 2 admits
    15 % of the values to its top-k, as pass 1's floor does on real layers) and the frame ended; plus,
    timed on a sixteenth of the pixels, the top-k merges (PyTorch: one torch.topk of the (P, 2k) buffer per k
    maps; compiled: one quickselect cut of a full buffer, and the final select + sort of every pixel's top-k).
    Without `needed` (neurons-needed off): the four paper passes only, no top-k or per-pixel histograms."""
    P = height * width
    g = torch.Generator().manual_seed(0)
    maps = (torch.rand(probe_maps, height, width, generator=g) ** 4).to(device)
    heat = dict.fromkeys((0, 1), maps.sum(0, dtype=torch.float64) * 1000)
    lb, lbp = _LogBins(1e-4, 1.0, 2048), _LogBins(1e-4, 1.0, pixel_bins_for(P, topk_mb))
    compiled = a2k.usable(maps)
    if compiled:  # compile / load the kernels and build the bin tables (once per layer) outside the timing
        _warm()
        _ = lb.table, lbp.table
    z = torch.zeros(P, dtype=torch.float64, device=device)
    crossing = dict.fromkeys((0, 1), {q: (torch.zeros(P, dtype=torch.int64, device=device), z, z, z)
                                      for q in QUANTILES})
    floor = dict.fromkeys((0, 1), np.full(P, 0.85 ** 4, np.float32))  # u^4 > 0.85^4: 15 % of the values
    reducers = [_Pass1((lambda _: k) if needed else None), _Pass2(heat, lb, k, lbp, floor, needed=needed),
                _Pass3(lb, dict.fromkeys(MASS_LEVELS, 1024), 8192), _Pass4(dict.fromkeys(MASS_LEVELS, 0.01))]
    if needed:
        reducers.append(_PassRefine(crossing, lbp, lbp.bins, heat))
    info = _ProbeInfo(2 * probe_maps, height, width)
    first = again = ends = 0.0
    for red in reducers:  # frame 0 fills the reused buffers' pages (once per layer); frame 1 is timed
        red.begin_frame(info, 0)
        red.update(0, maps)
        red.end_frame()
        red.begin_frame(info, 1)
        t0 = time.perf_counter()
        red.update(0, maps)
        t1 = time.perf_counter()
        red.update(probe_maps, maps)
        t2 = time.perf_counter()
        red.end_frame()
        first, again, ends = first + t1 - t0, again + t2 - t1, ends + time.perf_counter() - t2
    per_map, per_frame, per_cut, final = again / probe_maps, max(0.0, first - again) + ends, 0.0, 0.0
    rows = max(1, P // 16)
    if not needed:
        return per_map, per_frame, 0.0, 0.0
    if compiled:
        cut, final = a2k.probe_topk(rows, k)
        per_cut, final = cut * P, final * P
    elif merges:
        buf = torch.rand(rows, 2 * k, generator=g).to(device)
        t0 = time.perf_counter()
        torch.topk(buf, k, dim=1, sorted=False)
        per_map += (time.perf_counter() - t0) * (P / rows) / k
    return per_map, per_frame, per_cut, final


@functools.cache
def _warm() -> None:
    """Run every compiled kernel once on a tiny canvas (numba compiles or loads them on their first call)."""
    maps = torch.rand(2, 6, 3, 4, generator=torch.Generator().manual_seed(0))
    for needed in (False, True):
        distributed_from_canvases(maps, topk=2, chunk=4, bins=16, sub_bins=16, neurons_needed=needed)


@dataclass
class _ProbeInfo:
    num_neurons: int
    height: int
    width: int


def distributed_from_canvases(maps: torch.Tensor, **kw) -> dict[str, Any]:
    """A2 statistics of given canvases (T, K, H, W) or (K, H, W) (Python API / tests)."""
    chunk = kw.pop("chunk", None)
    return distributed_stats(lambda reds: stream_tensors(maps, reds, chunk=chunk), **kw)


@dataclass
class DistributedOptions:
    """A2 histogram resolution; the opt-in neurons-needed statistic and its per-pixel top-k capacity."""

    bins: int = 2048  # coarse log bins of the |C| mass histogram
    sub_bins: int = 8192  # linear sub-bins of the crossing bin (τ refinement)
    neurons_needed: bool = False  # also neurons needed per pixel (beyond the paper; several times the cost)
    topk: int | None = None  # per-pixel top-k capacity of neurons-needed (default: what fits topk_mb)
    topk_mb: float = 512.0  # memory for neurons-needed's per-pixel top-k merge and histograms

    def validate(self) -> None:
        if self.bins < 2 or self.sub_bins < 2 or (self.topk is not None and self.topk < 1) or self.topk_mb <= 0:
            raise XincError(f"a2 options bins={self.bins}, sub_bins={self.sub_bins}, topk={self.topk}, "
                            f"topk_mb={self.topk_mb}: out of range ; need bins, sub_bins >= 2, topk >= 1, topk_mb > 0")


def _section(r: dict[str, Any]) -> dict[str, Any]:
    """The results.json numbers of one layer's statistics."""
    if r.get("empty"):
        return {"empty": True, "all_zero_maps": r["all_zero_maps"]}
    sec = {k: r[k] for k in ("num_neurons", "num_pixels", "total_mass", "all_zero_maps", "num_maps", "thresholds",
                             "neurons_per_pixel", "neurons_needed", "method")}
    ppn = r["pixels_per_neuron"]
    sec["pixels_per_neuron"] = {k: v for k, v in ppn.items() if k not in ("counts_per_frame", "fraction_sorted")}
    return sec


def _rows(variant: str, cmode: str, layer: str, r: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    """Table rows of one layer: pixels per (frame, neuron), and the thresholds τ_a."""
    counts = r["pixels_per_neuron"]["counts_per_frame"]  # (T, K)
    T, K = counts.shape
    fr, nk = np.repeat(np.asarray(r["frames"]), K).tolist(), np.tile(np.arange(K), T).tolist()
    ppn = [{"variant": variant, "layer": layer, "frame": f, "neuron": k, "pixels": c}
           for f, k, c in zip(fr, nk, counts.ravel().tolist())]
    thr = []
    for a in MASS_LEVELS:
        t = r["thresholds"][str(a)]
        thr.append({"variant": variant, "canvas": cmode, "layer": layer, "a": a, "tau": t["tau"],
                    "tau_lo": t["bracket"][0], "tau_hi": t["bracket"][1], "mass_above": t["mass_above"],
                    "mean_neurons_fraction": r["neurons_per_pixel"][str(a)]["mean_fraction"]})
    return ppn, thr


def _arrays(variant: str, layer: str, r: dict[str, Any], f0: int) -> dict[str, np.ndarray]:
    """The arrays the figures show: sorted pixels-per-neuron fractions and the maps of frame f0."""
    out = {f"{variant}/{layer}/fraction_sorted": np.asarray(r["pixels_per_neuron"]["fraction_sorted"])}
    out.update({f"{variant}/{layer}/n/{a}": r["maps"]["n"][a][f0].astype(np.float32) for a in MASS_LEVELS})
    if "needed" in r["maps"]:  # (only with --option a2.neurons_needed=true)
        out.update({f"{variant}/{layer}/needed/{q}": r["maps"]["needed"][q][f0].astype(np.float32)
                    for q in QUANTILES})
    return out


@register_analysis(AID, "Representations are distributed", options=DistributedOptions, streams=STREAMS)
def run(ctx: AnalysisContext, opts: DistributedOptions) -> AnalysisResult:
    """Pixels per neuron, neurons per pixel at a = 0.1 / 0.5 (and, opted in, neurons needed per pixel); per layer."""
    grid = each_variant_layer(ctx, lambda v, cm, la: distributed_stats(
        lambda reds: ctx.stream(la, reds, canvas_mode=cm), bins=opts.bins, sub_bins=opts.sub_bins, topk=opts.topk,
        topk_mb=opts.topk_mb, neurons_needed=opts.neurons_needed))
    modes = dict(ctx.variants())
    res = AnalysisResult(numbers={"canvas_modes": modes, "figure_frame": ctx.frames[0],
                                  "median": "median = mean of the two middle values (numpy); "
                                            "median_lower = the lower middle value (the original code's)"})
    ppn_rows, thr_rows = [], []
    for v, layers in grid.items():
        res.numbers[v] = {la: _section(r) for la, r in layers.items()}
        for la, r in layers.items():
            if r.get("empty"):
                continue
            rows = _rows(v, modes[v], la, r)
            ppn_rows += rows[0]
            thr_rows += rows[1]
            res.arrays.update(_arrays(v, la, r, ctx.frames[0]))
            res.summary.append(_summary_line(v, la, r))
    res.tables = {"pixels_per_neuron": ppn_rows, "thresholds": thr_rows}
    return res


def _summary_line(variant: str, layer: str, r: dict[str, Any]) -> str:
    ppn, nn = r["pixels_per_neuron"], r["neurons_needed"]
    zero = f"; {r['all_zero_maps']} all-zero maps" if r["all_zero_maps"] else ""
    needed = (f"median {_needed(nn['0.5'])} neurons hold 50% and {_needed(nn['0.9'])} hold 90% of a pixel's "
              "contribution" if nn.get("computed", True) else
              "neurons needed per pixel not computed (--option a2.neurons_needed=true)")
    return (f"{variant} {layer}: median neuron covers {100 * ppn['median_fraction']:.2f}% of pixels; "
            f"a=0.5 → {100 * r['neurons_per_pixel']['0.5']['mean_fraction']:.2f}% of {r['num_neurons']} "
            f"neurons per pixel; {needed}{zero}")


def _needed(rec: dict[str, Any]) -> str:
    if rec["median"] is None:
        lo, hi = rec["median_bounds"]
        fl, fh = rec["median_bounds_fraction"]
        if lo is None:
            return f">{rec['cap']}"
        return f"{lo:.0f}–{hi:.0f} ({100 * fl:.1f}–{100 * fh:.1f}%)" if hi is not None else f">={lo:.0f}"
    return f"{rec['median']:.0f} ({100 * rec['median_fraction']:.1f}%)"
