"""Cost estimates of canvases before heavy work starts: time a probe chunk, extrapolate to the layer and frames.

`xinc analyze` prints them so that a user learns up front that, e.g., the linear-mode canvas of a NeRV's first
block costs minutes per frame on a CPU, and can sample frames, pick layers or move to a GPU instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from xinc.canvas.engine import make_rule, model_device, plan_chunk, trace_frame


@dataclass
class CanvasCost:
    """Estimated seconds to compute one frame's canvas of `layer` in `mode` (probe-timed on this machine)."""

    layer: str
    mode: str
    neurons: int
    bytes_per_frame: int
    seconds_per_frame: float
    probe_neurons: int


def estimate(model, layer: str, mode: str = "paper", frame: int = 0, probe_seconds: float = 0.2,
             trace=None) -> CanvasCost:
    """Time rule.compute over a growing neuron range (until probe_seconds or the whole layer) and extrapolate
    linearly in the number of neurons (the rules' cost is linear in neurons per frame)."""
    rule = make_rule(model, layer, mode)
    dev = model_device(model)
    t0 = time.perf_counter()
    rule.prepare(trace if trace is not None else trace_frame(model, frame))
    prep = time.perf_counter() - t0
    K = rule.info.num_neurons
    chunk = plan_chunk(rule, None, None, dev)
    n, spent, done = min(K, max(1, chunk // 4)), 0.0, 0
    with torch.no_grad():
        while done < K and spent < probe_seconds:
            b = min(K, done + n)
            t0 = time.perf_counter()
            rule.compute(done, b)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            spent += time.perf_counter() - t0
            done, n = b, min(chunk, 2 * n)
    per = spent / max(done, 1) * K + prep
    size = K * rule.info.height * rule.info.width * (rule.info.channels or 1) * 4
    return CanvasCost(layer, mode, K, size, per, done)


def format_seconds(s: float) -> str:
    if s < 10:
        return f"{s:.1f} s"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"
