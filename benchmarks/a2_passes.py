"""CPU seconds of each A2 pass on a real layer: the whole pass (canvas + A2) and A2's own work (inside its
reducers' begin_frame/update/end_frame), compiled path vs the PyTorch reference (`--reference`, i.e. the
kernels off) in separate runs. CPU time (all threads), not wall: the machine may be shared.

    .venv/bin/python benchmarks/a2_passes.py models/nerv_bunny30 --layer block1 --mode paper --frames 0
    XINC_NUMBA=0 .venv/bin/python benchmarks/a2_passes.py models/nerv_bunny30 --layer block1   # reference
"""

from __future__ import annotations

import argparse
import collections
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--layer", default="block1")
    ap.add_argument("--mode", default="paper")
    ap.add_argument("--frames", default="0", help="comma-separated frame indices")
    a = ap.parse_args()

    from xinc.analysis.distributed import distributed_stats
    from xinc.canvas.engine import stream_canvas
    from xinc.canvas.kernels import backend
    from xinc.models.io import load_model
    from xinc.threads import configure_threads

    configure_threads()
    model = load_model(a.model)
    frames = [int(f) for f in a.frames.split(",")]
    own: dict[str, float] = collections.defaultdict(float)
    whole: dict[str, float] = {}

    def timed(red):
        name = type(red).__name__
        for meth in ("begin_frame", "update", "end_frame"):
            f = getattr(red, meth)

            def g(*args, _f=f, **kw):
                t = time.process_time()
                out = _f(*args, **kw)
                own[name] += time.process_time() - t
                return out

            setattr(red, meth, g)
        return red

    def stream(reds):
        t = time.process_time()
        stream_canvas(model, a.layer, frames, [timed(r) for r in reds], mode=a.mode)
        whole["+".join(type(r).__name__ for r in reds)] = time.process_time() - t

    stream_canvas(model, a.layer, frames, [], mode=a.mode)  # warm-up (kernels compiled or loaded)
    t = time.process_time()
    stream_canvas(model, a.layer, frames, [], mode=a.mode)
    canvas = time.process_time() - t
    t = time.process_time()
    out = distributed_stats(stream)
    total = time.process_time() - t
    print(f"A2 on {a.model} {a.layer} ({a.mode}), frames {frames}; kernels: {backend() or 'off (reference)'}")
    print(f"canvas alone: {canvas:.2f} CPU-s per pass")
    for name, s in whole.items():
        print(f"  pass {name:22s} whole {s:7.2f}  A2 own {sum(own[n] for n in name.split('+')):7.2f}")
    print(f"total {total:.2f} CPU-s, A2 own {sum(own.values()):.2f} CPU-s; censored pixels "
          + ", ".join(f"q={q}: {v['censored_fraction']:.3f}" for q, v in out["neurons_needed"].items()))


if __name__ == "__main__":
    main()
