"""The generic canvas engine (xinc.explain, torch.fx + layer-local kinds) beside the fast registered rules.

For each layer of the paper NeRV (128x256, random weights) and the paper FFN, both paths stream the same
frame's canvas into a HeatMap reducer; the script prints wall and CPU seconds of each and the ratio
generic / fast (best of --repeats, same process, same forward pass for the fast path). NeRV: the generic path
runs on the same blocks and head written as a plain module (a foreign model), with identical maps (checked:
heat maps agree); the fast path is timed with the maps streamed (what the generic path does) and fused
(its default for HeatMap). FFN: the generic neurons are (c_in, c_out) slices, m times as many maps as the
fast rule's c_in neurons, so the per-map ratio is printed too.

--memory streams sampled neurons of the last block of a 640x1280 HNeRV-like decoder through the generic
path in a fresh process per mode under --budget-mb and prints the peak resident set size above the RSS
before the call (/proc/self/status VmHWM after resetting it).

    .venv/bin/python benchmarks/generic_bench.py                 # NeRV + FFN layers, paper mode
    .venv/bin/python benchmarks/generic_bench.py --mode linear   # the same in linear mode
    .venv/bin/python benchmarks/generic_bench.py --memory --budget-mb 2048
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from canvas_bench import memory_status  # same folder: the benchmarks run as scripts
from xinc.canvas import HeatMap, explain_stream, stream_canvas
from xinc.canvas.engine import trace_frame
from xinc.models import FFN, FFNConfig, NeRV, NeRVConfig


class Decoder(nn.Module):
    """A NeRV's blocks and head as a foreign model writes them (input: the first block's input)."""

    def __init__(self, nerv: NeRV) -> None:
        super().__init__()
        self.blocks, self.head, self.act = nerv.blocks, nerv.head, nerv.act

    def forward(self, x):
        for blk in self.blocks:
            x = self.act(F.pixel_shuffle(blk.conv(x), blk.stride))
        return self.head(x)


def best(fn, repeats: int) -> tuple[float, float, object]:
    """(best wall s, best CPU s, last result) over repeats."""
    wall = cpu = float("inf")
    out = None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return wall, cpu, out


def heat_fast(model, layer: str, mode: str, tr, fused: bool):
    red = HeatMap()
    stream_canvas(model, layer, [0], red, mode=mode, trace=tr, fused=fused)
    return red.result()[0]


def heat_generic(model, x, layer: str, mode: str, **kw):
    red = HeatMap()
    explain_stream(model, x, layer, red, mode, engine="generic", **kw)
    return red.result()[0]


def show(row: dict) -> dict:
    """Print one result row as soon as it is measured."""
    print("  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    return row


def nerv_rows(mode: str, repeats: int, only: set[str] | None = None) -> list[dict]:
    torch.manual_seed(0)
    nerv = NeRV(NeRVConfig()).eval()
    tr = trace_frame(nerv, 0)
    dec, x = Decoder(nerv).eval(), tr.inputs["block1"]
    rows = []
    for i, layer in enumerate(nerv.layer_names):
        if only and layer not in only:
            continue
        path = "head" if layer == "head" else f"blocks.{i}.conv"
        w_s, c_s, ref = best(partial(heat_fast, nerv, layer, mode, tr, False), repeats)
        w_f, c_f, _ = best(partial(heat_fast, nerv, layer, mode, tr, True), repeats)
        w_g, c_g, got = best(partial(heat_generic, dec, x, path, mode), repeats)
        agree = bool(torch.allclose(got, ref, rtol=1e-3, atol=1e-4 * float(ref.abs().max())))
        rows.append(show(dict(case=f"nerv {layer} {mode}", fast_streamed_s=w_s, fast_fused_s=w_f, generic_s=w_g,
                              ratio_vs_streamed=w_g / w_s, ratio_vs_fused=w_g / w_f,
                              cpu_ratio_vs_streamed=c_g / c_s, heat_agrees=agree)))
    return rows


def ffn_rows(mode: str, repeats: int, only: set[str] | None = None) -> list[dict]:
    ffn = FFN(FFNConfig(), generator=torch.Generator().manual_seed(0)).eval()
    tr = trace_frame(ffn, 0)
    coords, hw = ffn.coords(), (ffn.config.height, ffn.config.width)
    rows = []
    layers = list(enumerate(ffn.layer_names))
    if mode == "linear":  # earlier layers: every (c_in, c_out) neuron carries a (P, hidden) state: minutes
        layers = layers[-1:]
    for i, layer in layers:
        if only and layer not in only:
            continue
        lin = ffn.layers[i]
        w_f, _, _ = best(partial(heat_fast, ffn, layer, mode, tr, True), repeats)
        w_s, c_s, _ = best(partial(heat_fast, ffn, layer, mode, tr, False), repeats)
        w_g, c_g, _ = best(partial(heat_generic, ffn, coords, f"layers.{i}", mode, layout="pc", hw=hw),
                            repeats)
        rows.append(show(dict(case=f"ffn {layer} {mode}", fast_streamed_s=w_s, fast_fused_s=w_f, generic_s=w_g,
                              ratio_vs_streamed=w_g / w_s, ratio_vs_fused=w_g / w_f,
                              cpu_ratio_vs_streamed=c_g / c_s,
                              per_map_ratio_vs_streamed=(w_g / (lin.in_features * lin.out_features))
                              / (w_s / lin.in_features))))
    return rows


def _memory_child(mode: str, budget: float, neurons: int, q) -> None:
    """In a fresh process: peak RSS of streaming `neurons` neurons of the 640x1280 decoder's last block."""
    torch.set_num_threads(torch.get_num_threads())
    cfg = NeRVConfig(kind="hnerv", height=640, width=1280, num_frames=1, embed="table", embed_shape=[16, 2, 4],
                     fc_hw=[2, 4], fc_dim=68, strides=[5, 4, 4, 2, 2], kernel_sizes=[1, 3, 5, 5, 5],
                     widths=[57, 48, 40, 33, 28], head_ks=3)
    torch.manual_seed(0)
    nerv = NeRV(cfg).eval()
    with torch.no_grad():
        nerv.embeddings.normal_()
    x = nerv.trace([0]).inputs["block1"]
    dec = Decoder(nerv).eval()
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
        f.write("5")
    before = memory_status()["VmRSS"]
    t0 = time.perf_counter()
    red = HeatMap()
    explain_stream(dec, x, "blocks.4.conv", red, mode, engine="generic", memory_budget_mb=budget,
                   neurons=(0, neurons))
    q.put(dict(case=f"640x1280 block5 {mode} generic, {neurons} of {33 * 112} neurons", budget_mb=budget,
               seconds=time.perf_counter() - t0, peak_above_start_mb=(memory_status()["VmHWM"] - before) / 2**20))


def memory_rows(budget: float, neurons: int) -> list[dict]:
    rows = []
    ctx = mp.get_context("spawn")
    for mode in ("paper", "linear"):
        q = ctx.Queue()
        p = ctx.Process(target=_memory_child, args=(mode, budget, neurons, q))
        p.start()
        rows.append(show(q.get()))
        p.join()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("paper", "linear"), default="paper")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--only", choices=("nerv", "ffn"), default=None)
    ap.add_argument("--layers", default=None, help="comma-separated paper layer names, e.g. block3,head,layer3")
    ap.add_argument("--memory", action="store_true", help="only the 640x1280 memory measurement")
    ap.add_argument("--budget-mb", type=float, default=2048.0)
    ap.add_argument("--neurons", type=int, default=256)
    ap.add_argument("--json", default=None, help="also write the rows to this JSON file")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.memory:
        rows = memory_rows(a.budget_mb, a.neurons)
    else:
        only = set(a.layers.split(",")) if a.layers else None
        rows = (nerv_rows(a.mode, a.repeats, only) if a.only != "ffn" else []) + \
            (ffn_rows(a.mode, a.repeats, only) if a.only != "nerv" else [])
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
