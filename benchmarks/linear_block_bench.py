"""The linear NeRV block rule: adjoint form (per-pixel Jacobians, xinc.canvas.adjoint) against the per-neuron
forward form (xinc.canvas.rules.linear_block_forward, what the rule did before), in the same run.

Per block of the paper-config NeRV (random weights, 128x256; or a model directory): CPU seconds of the frame's
Jacobian, of the adjoint maps per neuron and of the forward maps per neuron (a few chunks), extrapolated to the
whole layer, the ratio forward / adjoint per frame, and the largest relative difference of the maps. CPU time
(user + sys of this process) is reported because the machine may be shared; ratios are the result.

    .venv/bin/python benchmarks/linear_block_bench.py
    .venv/bin/python benchmarks/linear_block_bench.py --model models/bunny --chunks 2
"""

from __future__ import annotations

import argparse
import time

import torch


def cpu() -> float:
    return time.process_time()


def bench_layer(model, layer: str, frame: int, chunks: int) -> dict:
    from xinc.canvas.engine import make_rule, plan_chunk, trace_frame
    from xinc.canvas.rules import linear_block_forward

    rule = make_rule(model, layer, "linear")
    K = rule.info.num_neurons
    n = plan_chunk(rule, None, None, None)
    with torch.no_grad():
        tr = trace_frame(model, frame)
        t0 = cpu()
        rule.prepare(tr)
        prep = cpu() - t0
        starts = [min(K - 1, (K // chunks) * j) for j in range(chunks)]
        t_adj = t_fwd = 0.0
        done = 0
        diff = 0.0
        for a in starts:
            b = min(K, a + n)
            t0 = cpu()
            fast, _ = rule.compute(a, b)
            t1 = cpu()
            slow = linear_block_forward(rule, a, b)
            t2 = cpu()
            t_adj, t_fwd, done = t_adj + t1 - t0, t_fwd + t2 - t1, done + b - a
            diff = max(diff, float((fast - slow).abs().max() / slow.abs().max()))
    adj = prep + t_adj / done * K
    fwd = t_fwd / done * K
    return {"layer": layer, "neurons": K, "jacobian_s": prep, "adjoint_s": adj, "forward_s": fwd,
            "ratio": fwd / adj, "rel_diff": diff, "jacobian_mb": rule.jacobian_bytes() / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="a NeRV model directory (default: paper config, random weights)")
    ap.add_argument("--frame", type=int, default=0)
    ap.add_argument("--chunks", type=int, default=3, help="neuron chunks timed per layer and form")
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
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; CPU seconds per frame (extrapolated)")
    print(f"{'layer':8s} {'neurons':>8s} {'J (MiB)':>8s} {'J s':>7s} {'adjoint s':>10s} {'forward s':>10s} "
          f"{'fwd/adj':>8s} {'max rel diff':>12s}")
    for layer in layers:
        r = bench_layer(model, layer, args.frame, args.chunks)
        print(f"{r['layer']:8s} {r['neurons']:8d} {r['jacobian_mb']:8.0f} {r['jacobian_s']:7.2f} "
              f"{r['adjoint_s']:10.2f} {r['forward_s']:10.1f} {r['ratio']:8.1f} {r['rel_diff']:12.1e}")


if __name__ == "__main__":
    main()
