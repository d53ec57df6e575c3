"""Canvas memo: whole canvases kept in memory (within a byte budget) so that multi-pass analyses and several
analyses over the same layer compute each (layer, mode, frame) canvas once.

A2 streams every layer four or five times (heat, shares, thresholds, counts) and A1-A6 stream the same layers
again; recomputing the canvas per pass and per analysis was most of `xinc analyze`'s time on small models. The
memo replays stored maps to later reducers. Canvases larger than the budget stream as before (nothing is
stored); to make room, entries of other layers/modes that were cheaper to compute per byte are evicted (never
entries of the layer being streamed, so a cyclic frame order cannot thrash, and never a costlier canvas for a
cheaper one). Replayed maps are the same tensors, so results equal streaming up to the reducers' chunking.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence

import torch

from xinc.canvas.engine import check_model, iter_canvas, layer_info, make_rule, num_frames, on_device, plan_chunk
from xinc.canvas.reduce import HeatMap, NeuronTotals, Reducer, fused_kind, fused_kinds
from xinc.threads import release_freed_memory

DEFAULT_MEMO_MB = float(os.environ.get("XINC_CANVAS_MEMO_MB", "1024"))


class CanvasMemo:
    """Canvases of one model kept in memory up to `budget_mb` (0 turns the memo off)."""

    def __init__(self, budget_mb: float | None = None, rss_limit_mb: float | None = None) -> None:
        self.budget = int(float(DEFAULT_MEMO_MB if budget_mb is None else budget_mb) * 2**20)
        # a canvas is only stored while the process' resident memory plus it stays under this (a worker budget)
        self.rss_limit = None if rss_limit_mb is None else float(rss_limit_mb) * 2**20
        self.used = 0
        self._store: OrderedDict[tuple, tuple[torch.Tensor, object, dict]] = OrderedDict()
        self._cost: dict[tuple, float] = {}  # seconds the entry took to compute, per byte (eviction order)
        self.hits = self.misses = 0
        self._side: dict[tuple, tuple] = {}  # (heat, totals, info, residual) of streamed frames (_keep_side)
        self.side_used = 0
        self._rss_mark = 0.0  # RSS (MB) after the last trim (_trim_if_grown)

    @staticmethod
    def nbytes(info) -> int:
        """Bytes of one frame's canvas of a layer (float32)."""
        return int(info.num_neurons) * int(info.height) * int(info.width) * int(info.channels or 1) * 4

    def _room(self, size: int) -> bool:
        """Whether a canvas of `size` bytes may be stored: within the memo budget and, under an RSS limit, with the
        process' resident memory now plus it below the limit."""
        if size > self.budget:
            return False
        if self.rss_limit is None:
            return True
        from xinc.memory import rss_mb

        return rss_mb() * 2**20 + size <= self.rss_limit

    def _victims(self, group: tuple, need: int, density: float) -> tuple[list[tuple], int]:
        """(entries to evict, bytes free after it) to make `need` bytes: entries of other layers/modes that were
        cheaper to compute per byte, cheapest first (so a costly linear-mode canvas outlives cheap paper ones)."""
        victims, free = [], self.budget - self.used
        for k in sorted((k for k in self._store if k[:-1] != group), key=lambda k: self._cost.get(k, 0.0)):
            if free >= need or self._cost.get(k, 0.0) > density:
                break
            victims.append(k)
            free += self._store[k][0].numel() * self._store[k][0].element_size()
        return victims, free

    def _worth_storing(self, group: tuple, size: int) -> bool:
        """Whether a new canvas of `group` could be admitted: within the budget (and RSS limit) and, once the
        group has entries (their cost per byte is known), with room or cheaper entries to evict. Else the frame is
        streamed without a (K, ...) copy that would be thrown away (which grew the heap frame after frame)."""
        if not self._room(size):
            return False
        known = [self._cost[k] for k in self._store if k[:-1] == group]
        return not known or self._victims(group, size, max(known))[1] >= size

    def _admit(self, key: tuple, store: torch.Tensor, info, residual: dict, seconds: float) -> bool:
        """Keep a computed canvas if room can be made by evicting entries of other layers/modes that were cheaper
        to compute per byte (cheapest first, so a costly linear-mode canvas outlives cheap paper ones)."""
        need = store.numel() * store.element_size()
        density = seconds / max(need, 1)
        victims, free = self._victims(key[:-1], need, density)
        if free < need:
            return False
        for k in victims:
            maps, _, _ = self._store.pop(k)
            self._cost.pop(k, None)
            self.used -= maps.numel() * maps.element_size()
        info.residual = dict(residual)
        self._store[key], self._cost[key] = (store, info, residual), density
        self.used += need
        return True

    def clear(self) -> None:
        self._store.clear()
        self._cost.clear()
        self._side.clear()
        self.used = self.side_used = 0

    def stream(self, model, layer: str, frames: int | Sequence[int] | None, reducers: Reducer | Iterable[Reducer],
               *, mode: str = "paper", chunk_neurons: int | None = None, memory_budget_mb: float | None = None,
               device=None, progress=None) -> dict[int, dict[str, float]]:
        """Like xinc.canvas.stream_canvas (maps, not fused reductions): replay stored canvases, store new ones that
        fit. Reducers the rule can fuse (heat, totals) on a canvas not stored yet take the engine's fused path
        (cheaper than forming maps) and store nothing. Returns {frame: residual}."""
        from xinc.canvas import stream_canvas

        reducers = [reducers] if isinstance(reducers, Reducer) else list(reducers)
        check_model(model)
        model = on_device(model, device)
        frames = list(range(num_frames(model))) if frames is None else [frames] if isinstance(frames, int) else frames
        info = layer_info(model, layer, mode=mode)
        size = self.nbytes(info)
        group = (id(model), layer, mode)
        kinds = fused_kinds(reducers)
        standard = bool(kinds) and None not in kinds  # heat/totals only: a side entry can serve them
        fused = standard and frozenset(kinds) <= make_rule(model, layer, mode).fusable()
        out: dict[int, dict[str, float]] = {}
        for f in (int(f) for f in frames):
            key = (*group, f)
            if key in self._store:
                self.hits += 1
                self._store.move_to_end(key)
                out[f] = self._replay(self._store[key], f, reducers, chunk_neurons, progress)
                continue
            if standard and key in self._side:
                self.hits += 1
                out[f] = self._replay_side(self._side[key], f, reducers, progress)
                continue
            self.misses += 1
            keep = not fused and self._worth_storing(group, size)
            # maps streamed and not kept whole: reduce them on the side too (a stored canvas replays instead)
            side = [] if fused or keep or key in self._side else [HeatMap(), NeuronTotals()]
            if keep:
                out[f] = self._compute(model, layer, f, mode, reducers, chunk_neurons, memory_budget_mb, progress,
                                       key)
            else:
                out.update(stream_canvas(model, layer, [f], reducers + side, mode=mode, chunk_neurons=chunk_neurons,
                                         memory_budget_mb=memory_budget_mb, progress=progress))
            if side:
                self._keep_side(key, f, side, out[f])
            self._trim_if_grown()
        return out

    def _trim_if_grown(self, step_mb: float = 512.0) -> None:
        """Return freed heap to the system once RSS grew `step_mb` since the last time: under xinc's keep-freed-
        memory policy the blocks a streamed frame frees fragment around stored canvases and pile up frame after
        frame (bunny NeRV, 10 linear frames: 4.6 GB peak; trimming: 1.7 GB)."""
        from xinc.memory import rss_mb

        if rss_mb() > self._rss_mark + step_mb:
            release_freed_memory()
            self._rss_mark = rss_mb()

    def _keep_side(self, key: tuple, f: int, side: list, residual: dict) -> None:
        """Keep a streamed frame's heat map and neuron totals (small) within a sixteenth of the budget, so a later
        heat/totals-only stream of that frame (A1 after A2) replays them instead of recomputing the maps."""
        heat, totals = side[0].result()[f], side[1].result()[f]
        need = heat.numel() * heat.element_size() + totals.numel() * totals.element_size()
        if self.side_used + need <= self.budget // 16:
            self._side[key] = (heat, totals, side[0].info, dict(residual))
            self.side_used += need

    @staticmethod
    def _replay_side(entry, f: int, reducers, progress) -> dict[str, float]:
        """Hand a kept heat map / totals to heat/totals reducers as the engine's fused path would."""
        heat, totals, info, residual = entry
        info.residual = dict(residual)
        values = {"heat": heat, "totals": totals}
        for red in reducers:
            red.begin_frame(info, f)
        for red in (r for r in reducers if not r.passive):
            red.update_reduced(0, info.num_neurons, values[fused_kind(red)])
        if progress is not None:
            progress(info.num_neurons)
        for red in reducers:
            red.end_frame()
        return dict(residual)

    def chunks(self, model, layer: str, frame: int, *, mode: str = "paper", chunk_neurons: int | None = None,
               memory_budget_mb: float | None = None, device=None):
        """Like xinc.canvas.iter_canvas: yield (start, maps) of one frame, replayed when stored (in the chunks the
        engine would use, so two frames iterated in lockstep stay aligned), else computed and stored when it
        fits. Returns the residual dict as the generator's value."""
        check_model(model)
        model = on_device(model, device)
        info = layer_info(model, layer, mode=mode)
        key = (id(model), layer, mode, int(frame))
        dev = next(model.parameters()).device
        step = plan_chunk(make_rule(model, layer, mode), chunk_neurons, memory_budget_mb, dev)
        if key in self._store:
            self.hits += 1
            self._store.move_to_end(key)
            maps, _, residual = self._store[key]
            for s in range(0, maps.shape[0], step):
                yield s, maps[s:s + step]
            return dict(residual)
        self.misses += 1
        keep = self._worth_storing(key[:-1], self.nbytes(info))
        store, residual = None, {}
        t0 = time.perf_counter()
        it = iter_canvas(model, layer, frame, mode=mode, chunk_neurons=chunk_neurons, memory_budget_mb=memory_budget_mb)
        while True:
            try:
                start, maps = next(it)
            except StopIteration as stop:
                residual = dict(stop.value or {})
                break
            if keep:
                if store is None:
                    store = maps.new_empty((info.num_neurons, *maps.shape[1:]))
                store[start:start + maps.shape[0]] = maps
            yield start, maps
        if store is not None:
            self._admit(key, store, info, residual, time.perf_counter() - t0)
        return residual

    def _compute(self, model, layer, f, mode, reducers, chunk, budget, progress, key) -> dict[str, float]:
        """Stream one frame from the engine into the reducers and into a (K, ...) tensor offered to the memo."""
        it = iter_canvas(model, layer, f, mode=mode, chunk_neurons=chunk, memory_budget_mb=budget)
        store = info = None
        t0 = time.perf_counter()
        while True:
            try:
                start, maps = next(it)
            except StopIteration as stop:
                residual = dict(stop.value or {})
                break
            if store is None:
                info = layer_info(model, layer, mode=mode)
                store = maps.new_empty((info.num_neurons, *maps.shape[1:]))
                for red in reducers:
                    red.begin_frame(info, f)
            store[start:start + maps.shape[0]] = maps
            for red in reducers:
                red.update(start, maps)
            if progress is not None:
                progress(maps.shape[0])
        seconds = time.perf_counter() - t0
        info.residual = dict(residual)
        for red in reducers:
            red.end_frame()
        self._admit(key, store, info, residual, seconds)
        return residual

    @staticmethod
    def _replay(entry, f: int, reducers, chunk: int | None, progress) -> dict[str, float]:
        maps, info, residual = entry
        info.residual = dict(residual)
        step = int(chunk) if chunk else max(1, (32 << 20) // max(1, maps[0].numel() * 4))  # ~32 MiB chunks
        for red in reducers:
            red.begin_frame(info, f)
        for s in range(0, maps.shape[0], step):
            part = maps[s:s + step]
            for red in reducers:
                red.update(s, part)
            if progress is not None:
                progress(part.shape[0])
        for red in reducers:
            red.end_frame()
        return dict(residual)
