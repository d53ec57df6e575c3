"""CPU seconds and ns per value of each A2 pass on a real layer, at the default settings (the paper statistics)
and with the opt-in neurons-needed statistic (`a2.neurons_needed=true`), side by side in the same run: the whole
pass (canvas + A2) and A2's own work (inside its reducers' begin_frame/update/end_frame). The compiled path, or
the PyTorch reference with XINC_NUMBA=0 (the kernels off). CPU time (all threads), not wall: the machine may be
shared; ratios (opt-in / default) are measured in the same run.

    .venv/bin/python benchmarks/a2_passes.py models/nerv_bunny30 --layer block1 --mode paper --frames 0
    XINC_NUMBA=0 .venv/bin/python benchmarks/a2_passes.py models/nerv_bunny30 --layer block1   # reference
"""

from __future__ import annotations

import argparse
import collections
import time


def _timed(red, own: dict[str, float]):
    """Wrap a reducer's begin_frame/update/end_frame so their CPU time adds up in own[class name]."""
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


def _run(model, layer: str, frames: list[int], mode: str, needed: bool) -> tuple[dict, dict, float, dict]:
    """(A2 own CPU-s per reducer, whole CPU-s per stream, total CPU-s, results) of one distributed_stats call."""
    from xinc.analysis.distributed import distributed_stats
    from xinc.canvas.engine import stream_canvas

    own: dict[str, float] = collections.defaultdict(float)
    whole: dict[str, float] = {}

    def stream(reds):
        t = time.process_time()
        stream_canvas(model, layer, frames, [_timed(r, own) for r in reds], mode=mode)
        whole["+".join(type(r).__name__ for r in reds)] = time.process_time() - t

    t = time.process_time()
    out = distributed_stats(stream, neurons_needed=needed)
    return own, whole, time.process_time() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--layer", default="block1")
    ap.add_argument("--mode", default="paper")
    ap.add_argument("--frames", default="0", help="comma-separated frame indices")
    a = ap.parse_args()

    from xinc.analysis.distributed import QUANTILES, _warm
    from xinc.canvas.engine import layer_info, stream_canvas
    from xinc.canvas.kernels import backend
    from xinc.models.io import load_model
    from xinc.threads import configure_threads

    configure_threads()
    model = load_model(a.model)
    frames = [int(f) for f in a.frames.split(",")]
    info = layer_info(model, a.layer)
    values = info.num_neurons * info.height * info.width * len(frames)
    if backend():
        _warm()  # kernels compiled or loaded outside the timing
    stream_canvas(model, a.layer, frames, [], mode=a.mode)  # warm-up
    t = time.process_time()
    stream_canvas(model, a.layer, frames, [], mode=a.mode)
    canvas = time.process_time() - t
    runs = {"default": _run(model, a.layer, frames, a.mode, False),
            "neurons_needed": _run(model, a.layer, frames, a.mode, True)}
    print(f"A2 on {a.model} {a.layer} ({a.mode}), frames {frames}: {values:.3g} values; "
          f"kernels: {backend() or 'off (reference)'}")
    print(f"canvas alone: {canvas:.2f} CPU-s per pass")
    print(f"{'pass (A2 own work)':28s} {'default':>18s} {'neurons_needed':>18s}  ratio")
    d, n = runs["default"][0], runs["neurons_needed"][0]
    for name in sorted(set(d) | set(n), key=lambda x: ("_Pass1", "_Pass2", "_Pass3", "_PassRefine", "_Pass4").index(x)):
        sd, sn = d.get(name, 0.0), n.get(name, 0.0)
        ratio = f"{sn / sd:5.1f}x" if sd > 0 else "  (opt-in only)"
        print(f"  {name:26s} {sd:6.2f} s {1e9 * sd / values:5.1f} ns  {sn:6.2f} s {1e9 * sn / values:5.1f} ns  {ratio}")
    od, on = sum(d.values()), sum(n.values())
    print(f"  {'A2 own, all passes':26s} {od:6.2f} s {1e9 * od / values:5.1f} ns  {on:6.2f} s "
          f"{1e9 * on / values:5.1f} ns  {on / max(od, 1e-9):5.1f}x")
    td, tn = runs["default"][2], runs["neurons_needed"][2]
    print(f"  {'whole (canvas + A2)':26s} {td:6.2f} s {'':8s}  {tn:6.2f} s {'':8s}  {tn / max(td, 1e-9):5.1f}x")
    out = runs["neurons_needed"][3]
    if not out.get("empty"):
        print("neurons_needed censored pixels: " + ", ".join(
            f"q={q}: {out['neurons_needed'][str(q)]['censored_fraction']:.3f}" for q in QUANTILES))
        same = all(runs["default"][3]["thresholds"][k]["tau"] == out["thresholds"][k]["tau"]
                   for k in out["thresholds"])
        print(f"τ_a identical in both settings: {same}")


if __name__ == "__main__":
    main()
