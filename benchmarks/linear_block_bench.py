"""The linear NeRV block rule: its compiled CPU path (compact Jacobian + fused kernel, issue 20) against the
batched product on the full per-pixel Jacobian (the torch path, what CPU ran before) and the per-neuron forward
form (xinc.canvas.rules.linear_block_forward, the slow reference), in the same run.

Per block of the paper-config NeRV (random weights, 128x256; or a model directory): CPU seconds per frame of
the Jacobian (prepare) and of all chunks (timed on a few chunks at the engine's default chunk size, the two
paths alternating, extrapolated to the layer; --chunks 0 times every chunk), the ratio torch / compiled, and
the largest relative difference of each path's maps from the forward form. CPU time (user + sys of this
process) is reported because the machine may be shared; ratios are the result.

    .venv/bin/python benchmarks/linear_block_bench.py
    .venv/bin/python benchmarks/linear_block_bench.py --model models/nerv_bunny30 --layers block1,block2,block3
    .venv/bin/python benchmarks/linear_block_bench.py --model models/nerv_bunny30 --chunks 0   # whole frames
"""

from __future__ import annotations

import argparse
import time

import torch


def cpu() -> float:
    return time.process_time()


def prepared(model, layer: str, tr, compiled: bool):
    """The rule of `layer`, prepared on trace `tr` with the compiled path on or off; (rule, CPU seconds)."""
    from xinc.canvas import kernels
    from xinc.canvas.engine import make_rule

    was = kernels.ENABLED
    kernels.ENABLED = compiled
    try:
        rule = make_rule(model, layer, "linear")
        t0 = cpu()
        rule.prepare(tr)
        return rule, cpu() - t0
    finally:
        kernels.ENABLED = was


def bench_layer(model, layer: str, frame: int, chunks: int, forward: bool) -> dict:
    from xinc.canvas import kernels
    from xinc.canvas.engine import plan_chunk, trace_frame
    from xinc.canvas.rules import linear_block_forward

    with torch.no_grad():
        tr = trace_frame(model, frame)
        prepared(model, layer, tr, kernels.available())  # one-time costs (numba loading its kernels) off the clock
        new, prep_new = prepared(model, layer, tr, kernels.available())
        old, prep_old = prepared(model, layer, tr, False)
        K, n = new.info.num_neurons, plan_chunk(new, None, None, None)
        new.compute(0, 1)  # one-time costs (numba start-up) off the clock
        old.compute(0, 1)
        t_old = t_new = 0.0
        done, diff_old, diff_new = 0, 0.0, 0.0
        starts = range(0, K, n) if chunks <= 0 else [max(0, min(K - n, (K // chunks) * j)) for j in range(chunks)]
        for q, a in enumerate(starts):
            b = min(K, a + n)
            t0 = cpu()
            m_old, _ = old.compute(a, b)
            t1 = cpu()
            m_new, _ = new.compute(a, b)
            t_old, t_new, done = t_old + t1 - t0, t_new + cpu() - t1, done + b - a
            if q >= 3 and forward:
                continue  # the forward form is slow: differences on the first chunks
            ref = linear_block_forward(old, a, b) if forward else m_old
            diff_old = max(diff_old, float((m_old - ref).abs().max() / ref.abs().max()))
            diff_new = max(diff_new, float((m_new - ref).abs().max() / ref.abs().max()))
    old_s, new_s = prep_old + t_old / done * K, prep_new + t_new / done * K
    return {"layer": layer, "neurons": K, "chunk": n, "prep_old": prep_old, "old_s": old_s, "prep_new": prep_new,
            "new_s": new_s, "ratio": old_s / new_s, "diff_old": diff_old, "diff_new": diff_new}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="a NeRV model directory (default: paper config, random weights)")
    ap.add_argument("--frame", type=int, default=0)
    ap.add_argument("--chunks", type=int, default=8,
                    help="neuron chunks timed per layer and path (0: every chunk of the frame, nothing extrapolated)")
    ap.add_argument("--no-forward", action="store_true",
                    help="skip the forward-form reference (differences are then compiled vs torch)")
    ap.add_argument("--layers", default=None, help="comma-separated blocks (default: every block)")
    args = ap.parse_args()
    from xinc.threads import configure_threads

    configure_threads()
    from xinc.models import NeRV, NeRVConfig, load_model

    if args.model:
        model = load_model(args.model)
    else:
        torch.manual_seed(0)
        model = NeRV(NeRVConfig())
    model.eval()
    layers = args.layers.split(",") if args.layers else [n for n in model.layer_names if n != "head"]
    from xinc.canvas import kernels

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, compiled: {kernels.backend()}; "
          "CPU seconds per frame (prepare + all chunks, extrapolated)")
    ref = "torch path" if args.no_forward else "forward form"
    print(f"{'layer':8s} {'neurons':>8s} {'chunk':>6s} {'torch prep':>10s} {'torch s':>8s} {'comp prep':>10s} "
          f"{'comp s':>7s} {'torch/comp':>10s}  max rel diff vs {ref} (torch, compiled)")
    for layer in layers:
        r = bench_layer(model, layer, args.frame, args.chunks, not args.no_forward)
        print(f"{r['layer']:8s} {r['neurons']:8d} {r['chunk']:6d} {r['prep_old']:10.2f} {r['old_s']:8.2f} "
              f"{r['prep_new']:10.2f} {r['new_s']:7.2f} {r['ratio']:10.2f}  {r['diff_old']:.1e}, {r['diff_new']:.1e}")


if __name__ == "__main__":
    main()
