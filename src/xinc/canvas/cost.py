"""Cost estimates of canvases before heavy work starts: time probe chunks, extrapolate to the layer and frames.

`xinc analyze` prints them so that a user learns up front that, e.g., the linear-mode canvas of a NeRV's first
block costs minutes per frame on a CPU, and can sample frames, pick layers or move to a GPU instead.

The first chunk a process computes pays one-time costs (numba compiling `xinc.canvas.kernels`, first
allocations, PyTorch's lazy start-up) that can be 100x a steady chunk; it is computed untimed, then chunks of
the size the engine plans are timed and the median seconds per map scaled to the layer (docs/reference/scale.md §4).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from xinc.canvas.engine import make_rule, model_device, plan_chunk, trace_frame
from xinc.canvas.rules import Rule, accumulate_part


@dataclass
class CanvasCost:
    """Estimated seconds to compute one frame's canvas of `layer` in `mode` (probe-timed on this machine)."""

    layer: str
    mode: str
    neurons: int
    bytes_per_frame: int
    seconds_per_frame: float
    probe_neurons: int  # maps timed (the untimed warm-up chunk not counted; a small layer is cycled over)
    prepare_seconds: float = 0.0  # per-frame set-up: forward pass and the rule's prepare (in seconds_per_frame)
    warmup_seconds: float = 0.0  # the untimed first chunk (one-time costs; not part of seconds_per_frame)

    def seconds_for(self, maps: int) -> float:
        """Estimated seconds for `maps` of the layer's maps of one frame (a neuron sample), set-up included."""
        per_map = (self.seconds_per_frame - self.prepare_seconds) / max(self.neurons, 1)
        return self.prepare_seconds + per_map * min(maps, self.neurons)


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def time_chunk(rule: Rule, a: int, b: int, dev: torch.device) -> float:
    """Seconds to compute maps [a, b) the way the engine does per chunk (maps, additive part, map sum)."""
    t0 = time.perf_counter()
    maps, part = rule.compute(a, b)
    accumulate_part(None, part, rule.part_shape())
    maps.sum(0)
    _sync(dev)
    return time.perf_counter() - t0


def probe_rate(rule: Rule, chunk: int, dev: torch.device, probe_seconds: float = 0.2,
               min_chunks: int = 5, max_chunks: int = 64) -> tuple[float, int, float]:
    """(median seconds per map, maps timed, warm-up seconds): one untimed warm-up chunk, then chunks of `chunk`
    maps (cycling over the layer when it is small) until `probe_seconds` and at least `min_chunks` are spent."""
    K = rule.info.num_neurons
    n = max(1, min(chunk, K))
    with torch.no_grad():
        warm = time_chunk(rule, 0, n, dev)
        rates, done, spent, a = [], 0, 0.0, n % K
        while len(rates) < max_chunks and (len(rates) < min_chunks or spent < probe_seconds):
            b = min(K, a + n)
            t = time_chunk(rule, a, b, dev)
            rates.append(t / (b - a))
            done, spent, a = done + b - a, spent + t, b % K
    return statistics.median(rates), done, warm


def estimate(model, layer: str, mode: str = "paper", frame: int = 0, probe_seconds: float = 0.2,
             trace=None) -> CanvasCost:
    """Per-frame cost of `layer` in `mode`: the frame's forward pass (left out when `trace` is given, as a caller
    reusing traces pays it once), the rule's set-up, and the probed median seconds per map times the layer's
    neurons (the rules' cost is linear in neurons per frame at a fixed chunk size)."""
    rule = make_rule(model, layer, mode)
    dev = model_device(model)
    fwd = 0.0
    if trace is None:
        trace_frame(model, frame)  # untimed: a process' first forward pass pays PyTorch's lazy start-up
        t0 = time.perf_counter()
        trace = trace_frame(model, frame)
        _sync(dev)
        fwd = time.perf_counter() - t0
    t0 = time.perf_counter()
    rule.prepare(trace)
    _sync(dev)
    prep = time.perf_counter() - t0 + fwd
    K = rule.info.num_neurons
    rate, done, warm = probe_rate(rule, plan_chunk(rule, None, None, dev), dev, probe_seconds)
    size = K * rule.info.height * rule.info.width * (rule.info.channels or 1) * 4
    return CanvasCost(layer, mode, K, size, rate * K + prep, done, prep, warm)


def format_seconds(s: float) -> str:
    if s < 10:
        return f"{s:.1f} s"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"
