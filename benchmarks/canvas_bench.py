"""Canvas engine vs a straightforward per-input-channel loop of the same rule (kept here, not in the package).

For every layer of the paper FFN and the paper NeRV (128x256, random weights) and for the head and last
block of a 640x1280 HNeRV-like decoder (strides 5,4,4,2,2; widths 57,48,40,33,28; kernels 1,3,5,5,5; 16x2x4
table embedding; neurons sampled), both implementations produce the per-pixel heat map sum_k |C_k| of one
frame: the loop like the original code (one input channel at a time, the whole canvas held in memory, then
reduced), the engine streaming chunks into a HeatMap reducer. Both heat maps are checked to agree.

Peak memory = peak resident set size above the RSS just before the call (Linux /proc/self/status VmHWM,
reset through /proc/self/clear_refs), so it counts torch's CPU allocations, which tracemalloc does not see.

    .venv/bin/python benchmarks/canvas_bench.py            # full (a few minutes on 2 cores)
    .venv/bin/python benchmarks/canvas_bench.py --quick    # ~1 minute: block1 and 640x1280 sampled
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from xinc.canvas import HeatMap, layer_info, stream_canvas
from xinc.models import FFN, FFNConfig, NeRV, NeRVConfig

# ------------------------------------------------------------------ memory / timing


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, val = line.split(":", 1)
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(val.split()[0]) * 1024
    return out


def measure(fn):
    """(result, seconds, peak RSS increase in bytes) of fn()."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    base = _status()["VmRSS"]
    t0 = time.perf_counter()
    res = fn()
    dt = time.perf_counter() - t0
    peak = _status()["VmHWM"] - base
    return res, dt, max(peak, 0)


# ------------------------------------------------------------------ loop baselines (one input channel at a time)


def loop_mlp(model: FFN, layer: str) -> torch.Tensor:
    """Paper MLP rule the direct way: for each input i, the m per-target maps c_ij, summed, then phi."""
    idx = int(layer[5:]) - 1
    tr = model.trace()
    a, lin = tr.inputs[layer], model.layers[idx]
    n = lin.in_features
    canvas = torch.empty(n, a.shape[0])
    for i in range(n):
        c = a[:, i:i + 1] * lin.weight[:, i][None] + lin.bias[None] / n  # (P, m)
        canvas[i] = model.activation(idx, c.sum(1))
    return canvas.abs().sum(0).reshape(model.config.height, model.config.width)


def _box(x: torch.Tensor, k: int) -> torch.Tensor:
    """k x k mean filter as a grouped conv with a ones kernel (zero padding)."""
    c = x.shape[0]
    w = torch.ones(c, 1, k, k) / (k * k)
    return F.conv2d(x[None], w, padding=k // 2, groups=c)[0]


def loop_head(model: NeRV, emb: torch.Tensor, n_in: int | None = None) -> torch.Tensor:
    tr = model.trace_embedding(emb)
    x = tr.inputs["head"][0]
    W, b = model.head.weight, model.head.bias
    cin, k = W.shape[1], W.shape[-1]
    n_in = n_in or cin
    canvas = torch.empty(n_in * W.shape[0], *x.shape[-2:])
    for i in range(n_in):
        canvas[i * 3:(i + 1) * 3] = F.conv2d(x[i][None, None], W[:, i:i + 1], b / cin, padding=k // 2)[0]
    return canvas.abs().sum(0)


def loop_block(model: NeRV, emb: torch.Tensor, bi: int, n_in: int | None = None) -> torch.Tensor:
    """Paper block rule the direct way: per input channel conv -> explicit PixelShuffle routing -> GELU ->
    box filter / nearest upsampling + GELU per downstream layer, the whole canvas kept."""
    tr = model.trace_embedding(emb)
    blk = model.blocks[bi]
    u = tr.inputs[f"block{bi + 1}"][0]
    W, b, r = blk.conv.weight, blk.conv.bias, blk.stride
    cout, cin, k, _ = W.shape
    n_in = n_in or cin
    H, Wd = model.config.height, model.config.width
    canvas = torch.empty(n_in * cout, H, Wd)
    for i in range(n_in):
        z = F.conv2d(u[i][None, None], W[:, i:i + 1], b / cin, padding=k // 2)[0]  # (cout, h, w)
        R = torch.zeros(cout, z.shape[1] * r, z.shape[2] * r)
        for s1 in range(r):
            for s2 in range(r):
                s = s1 * r + s2
                R[s::r * r, s1::r, s2::r] = z[s::r * r]
        A = F.gelu(R)
        for nxt in model.blocks[bi + 1:]:
            A = _box(A, nxt.conv.kernel_size[0])
            A = F.gelu(F.interpolate(A[None], scale_factor=nxt.stride, mode="nearest")[0])
        canvas[i * cout:(i + 1) * cout] = _box(A, model.head.kernel_size[0])
    return canvas.abs().sum(0)


# ------------------------------------------------------------------ engine


def engine_heat(model, layer: str, frame: int = 0, neurons=None, embedding=None, budget=None) -> torch.Tensor:
    red = HeatMap()
    stream_canvas(model, layer, [frame], red, neurons=neurons, embedding=embedding, memory_budget_mb=budget)
    return red.result()[frame]


# ------------------------------------------------------------------ models


def paper_ffn() -> FFN:
    return FFN(FFNConfig(), generator=torch.Generator().manual_seed(0)).eval()


def paper_nerv() -> NeRV:
    torch.manual_seed(0)
    return NeRV(NeRVConfig()).eval()


def hnerv_640() -> NeRV:
    cfg = NeRVConfig(kind="hnerv", height=640, width=1280, num_frames=1, embed="table", embed_shape=[16, 2, 4],
                     fc_hw=[2, 4], fc_dim=68, strides=[5, 4, 4, 2, 2], kernel_sizes=[1, 3, 5, 5, 5],
                     widths=[57, 48, 40, 33, 28], head_ks=3)
    torch.manual_seed(0)
    m = NeRV(cfg).eval()
    with torch.no_grad():
        m.embeddings.normal_()
    return m


# ------------------------------------------------------------------ driver


def run_case(name: str, loop_fn, engine_fn, n_maps: int, rows: list[dict]) -> None:
    with torch.no_grad():
        ref, t_loop, m_loop = measure(loop_fn)
        got, t_eng, m_eng = measure(engine_fn)
    err = ((got - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()
    row = {"case": name, "maps": n_maps, "loop_s": round(t_loop, 3), "engine_s": round(t_eng, 3),
           "speedup": round(t_loop / max(t_eng, 1e-9), 1), "loop_peak_mb": round(m_loop / 2**20, 1),
           "engine_peak_mb": round(m_eng / 2**20, 1),
           "memory_ratio": round(m_eng / m_loop, 3) if m_loop else None, "heat_rel_diff": float(f"{err:.2e}")}
    rows.append(row)
    print(f"{name:28s} {n_maps:6d} maps  loop {t_loop:8.2f}s  engine {t_eng:7.2f}s  x{row['speedup']:6.1f}  "
          f"peak {row['loop_peak_mb']:8.1f} -> {row['engine_peak_mb']:7.1f} MiB  heat diff {err:.1e}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="sample block1 and the 640x1280 layers (about a minute)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--budget-mb", type=float, default=None, help="engine memory budget per chunk (default 256)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows: list[dict] = []
    print(f"torch {torch.__version__}, {args.threads} threads, quick={args.quick}", flush=True)

    ffn = paper_ffn()
    for layer in ffn.layer_names:
        n = layer_info(ffn, layer).num_neurons
        run_case(f"ffn {layer}", lambda layer=layer: loop_mlp(ffn, layer),
                 lambda layer=layer: engine_heat(ffn, layer, budget=args.budget_mb), n, rows)

    nerv = paper_nerv()
    emb = nerv.embed([0])
    for layer in ["head", "block3", "block2", "block1"]:
        info = layer_info(nerv, layer)
        n_in = info.c_in if not (args.quick and layer == "block1") else 4
        nb = (0, n_in * info.c_out)
        tag = f"nerv {layer}" + ("" if n_in == info.c_in else f" ({n_in}/{info.c_in} c_in)")
        if layer == "head":
            loop = lambda n_in=n_in: loop_head(nerv, emb, n_in)  # noqa: E731
        else:
            loop = lambda layer=layer, n_in=n_in: loop_block(nerv, emb, int(layer[5:]) - 1, n_in)  # noqa: E731
        run_case(tag, loop, lambda layer=layer, nb=nb: engine_heat(nerv, layer, neurons=nb, budget=args.budget_mb),
                 nb[1], rows)

    big = hnerv_640()
    emb = big.embeddings[:1]
    for layer, n_in in (("head", 28 if not args.quick else 4), ("block5", 2 if not args.quick else 1)):
        info = layer_info(big, layer)
        nb = (0, n_in * info.c_out)
        tag = f"640x1280 {layer} ({n_in}/{info.c_in} c_in)"
        if layer == "head":
            loop = lambda n_in=n_in: loop_head(big, emb, n_in)  # noqa: E731
        else:
            loop = lambda n_in=n_in: loop_block(big, emb, 4, n_in)  # noqa: E731
        run_case(tag, loop, lambda layer=layer, nb=nb: engine_heat(big, layer, neurons=nb, budget=args.budget_mb),
                 nb[1], rows)

    ffn_min = min(r["speedup"] for r in rows if r["case"].startswith("ffn"))
    b1 = next(r for r in rows if r["case"].startswith("nerv block1"))
    summary = {"ffn_min_speedup": ffn_min, "block1_speedup": b1["speedup"], "block1_memory_ratio": b1["memory_ratio"],
               "targets": "ffn >= 30x, block1 >= 5x with memory ratio <= 0.25"}
    print(json.dumps(summary), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary, "threads": args.threads,
                                         "quick": args.quick}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
