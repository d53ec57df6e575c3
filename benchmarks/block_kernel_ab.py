"""In-process A/B of the paper block rule's compiled kernel against its eager PyTorch path on a stored model.

Same process, same trace, alternating compiled / eager runs (fastest of --repeats by process CPU time), heat map +
neuron totals of a neuron range of each layer; prints both times and how far the two results are apart.

    .venv/bin/python benchmarks/block_kernel_ab.py /work/runs/models/hnerv_bunny --layers block1:60,block5:112
"""

from __future__ import annotations

import argparse
import time

from xinc.threads import configure_threads

configure_threads()

import torch  # noqa: E402

from xinc.canvas import HeatMap, NeuronTotals, kernels, stream_canvas  # noqa: E402
from xinc.models.io import load_model  # noqa: E402


def run(model, tr, layer: str, n: int, compiled: bool) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """(process CPU s, wall s, heat map, totals) of neurons [0, n) of `layer`, compiled kernel on or off."""
    kernels.ENABLED = compiled
    heat, tot = HeatMap(), NeuronTotals()
    c0, t0 = time.process_time(), time.perf_counter()
    with torch.no_grad():
        stream_canvas(model, layer, [0], [heat, tot], neurons=(0, n), trace=tr)
    return time.process_time() - c0, time.perf_counter() - t0, heat.result()[0], tot.result()[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a model directory (xinc train / xinc import)")
    ap.add_argument("--layers", default="block1:60", help="LAYER:NEURONS,... (neurons 0..NEURONS-1)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    if not kernels.available():
        print("numba is not installed: nothing to compare")
        return 0
    model = load_model(args.model, "cpu")
    with torch.no_grad():
        tr = model.trace_embedding(model.embed([0]))
    for item in args.layers.split(","):
        layer, n = item.split(":")[0], int(item.split(":")[1])
        run(model, tr, layer, 2, True)  # JIT compile / cache load, not timed
        best: dict[bool, tuple] = {}
        for _ in range(args.repeats):
            for compiled in (True, False):
                got = run(model, tr, layer, n, compiled)
                if compiled not in best or got[0] < best[compiled][0]:
                    best[compiled] = got
        (cc, wc, hc, tc), (ce, we, he, te) = best[True], best[False]
        dh = ((hc - he).abs().max() / he.abs().max()).item()
        dt = ((tc - te).abs().max() / te.abs().max()).item()
        print(f"{layer} ({n} neurons): compiled {cc:.2f} CPU-s / {wc:.2f} s wall, eager {ce:.2f} / {we:.2f} "
              f"({ce / max(cc, 1e-9):.1f}x less CPU); heat rel diff {dh:.1e}, totals {dt:.1e}", flush=True)
    kernels.ENABLED = True
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
