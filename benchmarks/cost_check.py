"""Canvas cost estimates (xinc.canvas.cost.estimate, what `xinc analyze` prints) against a measured full-frame
canvas stream (xinc.canvas.engine.stream_canvas, no reducers) of the same layer and mode.

Per layer and mode, in one process like `xinc analyze` (the first probe pays numba's and PyTorch's start-up,
which the estimate must leave out): the estimate on frame 0, then one measured stream of frame 1 (CPU time
user+sys of this process and wall time). Ratio = estimate / measured wall (the estimate is wall-clock under
the current load); CPU/wall shows how many cores the stream kept busy.

    python benchmarks/cost_check.py MODEL_DIR [MODEL_DIR ...] [--layers block1,head] [--modes paper,linear]
"""

from __future__ import annotations

import argparse
import os
import time

from xinc.threads import configure_threads


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def check(model_dir: str, layers: list[str] | None, modes: list[str]) -> list[dict]:
    from xinc.canvas.cost import estimate
    from xinc.canvas.engine import num_frames, stream_canvas
    from xinc.models.io import load_model

    model = load_model(model_dir, "cpu")
    frame = 1 if num_frames(model) > 1 else 0
    rows = []
    for layer in layers or list(model.layer_names):
        for mode in modes:
            t0 = time.perf_counter()
            c = estimate(model, layer, mode, frame=0, probe_seconds=0.1)
            probe = time.perf_counter() - t0
            w0, c0 = time.perf_counter(), _cpu()
            stream_canvas(model, layer, [frame], [], mode=mode)
            wall, cpu = time.perf_counter() - w0, _cpu() - c0
            rows.append(dict(model=os.path.basename(model_dir.rstrip("/")), layer=layer, mode=mode, neurons=c.neurons,
                             estimate=c.seconds_per_frame, wall=wall, cpu=cpu, probe=probe, warmup=c.warmup_seconds))
            r = rows[-1]
            print(f"| {r['model']} | {layer} | {mode} | {c.neurons} | {r['estimate']:.3g} | {wall:.3g} | {cpu:.3g} | "
                  f"{r['estimate'] / wall:.2f} | {probe:.2f} (warm-up {r['warmup']:.2f}) |", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--layers", default=None, help="comma-separated layers (default: all)")
    ap.add_argument("--modes", default="paper,linear")
    a = ap.parse_args()
    configure_threads()
    print(f"load: {os.getloadavg()}")
    print("| model | layer | mode | maps | estimate s/frame | measured wall s | measured CPU s | estimate/wall | "
          "probe s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m in a.models:
        check(m, a.layers.split(",") if a.layers else None, a.modes.split(","))
    print(f"load: {os.getloadavg()}")


if __name__ == "__main__":
    main()
