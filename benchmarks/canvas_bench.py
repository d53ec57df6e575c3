"""Canvas engine vs a straightforward per-input-channel loop of the same rule (kept here, not in the package).

CPU-time ratios ("x") and wall-time ratios ("wall x") are both printed; calls are repeated until they used 1 s
(engine) or 2 s (loops) of CPU, at most 300 times, and the fastest repeat is kept, since a shared 2-core machine
is noisy (a minimum over a handful of loop runs is biased upwards less than over one). Every layer
is timed twice against the same loop run: the default fused HeatMap path (the FFN rule reduces in cache-sized
pixel tiles, the NeRV head in cache-sized bands of image rows, the block rule straight from the phase planes
of neuron tiles; no maps formed) and with the maps streamed to the reducer (what any custom reducer gets).

For every layer of the paper FFN and the paper NeRV (128x256, random weights) and for the head and last
block of a 640x1280 HNeRV-like decoder (strides 5,4,4,2,2; widths 57,48,40,33,28; kernels 1,3,5,5,5; 16x2x4
table embedding; neurons sampled), both implementations produce the per-pixel heat map sum_k |C_k| of one
frame: the loop like the original code (one input channel at a time, the whole canvas held in memory, then
reduced), the engine streaming chunks into a HeatMap reducer. Both heat maps are checked to agree. The FFN's
fair baseline is the rule's vectorised closed form phi(a_i sum_j W[j,i] + sum_j b_j/n) for all neurons at once
("closed"); the original-style per-target loop is reported beside it ("original").

Peak memory = peak resident set size above the RSS just before the call (Linux /proc/self/status VmHWM,
reset through /proc/self/clear_refs, after glibc's malloc_trim has returned freed memory), so it counts
torch's CPU allocations, which tracemalloc does not see.

    .venv/bin/python benchmarks/canvas_bench.py            # full (a few minutes on 2 cores)
    .venv/bin/python benchmarks/canvas_bench.py --quick    # ~1 minute: block1 and 640x1280 sampled
    .venv/bin/python benchmarks/canvas_bench.py --only "ffn layer3" --threads 1   # one case
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import time
from pathlib import Path

from xinc.threads import configure_threads

configure_threads()  # before torch starts its OpenMP pool: xinc's thread policy is the default measured here

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from xinc.canvas import HeatMap, kernels, layer_info, stream_canvas  # noqa: E402
from xinc.models import FFN, FFNConfig, NeRV, NeRVConfig  # noqa: E402

# ------------------------------------------------------------------ memory / timing


def memory_status() -> dict[str, int]:
    """VmRSS and VmHWM (peak) of this process in bytes, from /proc/self/status."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, val = line.split(":", 1)
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(val.split()[0]) * 1024
    return out


def _trim() -> None:
    """Hand freed heap memory back to the OS (glibc malloc_trim) so the next call's peak RSS counts what it
    allocates, not only what exceeds memory an earlier call freed and the allocator kept."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure(fn, min_cpu: float = 0.0, max_repeats: int = 300):
    """(result, wall seconds, process CPU seconds, peak RSS increase in bytes) of fn(); calls are repeated
    until they have used min_cpu seconds in all (at most max_repeats times) and the fastest repeat is
    reported (peak memory is the first call's)."""
    gc.collect()
    _trim()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    base = memory_status()["VmRSS"]
    t0, c0 = time.perf_counter(), time.process_time()
    res = fn()
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    peak = memory_status()["VmHWM"] - base
    spent = dc
    for _ in range(max_repeats - 1):
        if spent >= min_cpu:
            break
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        d_w, d_c = time.perf_counter() - t0, time.process_time() - c0
        dt, dc, spent = min(dt, d_w), min(dc, d_c), spent + d_c
    return res, dt, dc, max(peak, 0)


# ------------------------------------------------------------------ loop baselines (one input channel at a time)


def closed_mlp(model: FFN, layer: str, tr) -> torch.Tensor:
    """The fair FFN baseline: the paper MLP rule's vectorised closed form C_i = phi(a_i sum_j W[j,i] + sum_j b_j/n)
    for every neuron at once (one (P, n) tensor), then |C| summed over neurons."""
    idx = int(layer[5:]) - 1
    lin = model.layers[idx]
    c = tr.inputs[layer] * lin.weight.sum(0) + lin.bias.sum() / lin.in_features  # (P, n)
    return model.activation(idx, c).abs().sum(1).reshape(model.config.height, model.config.width)


def loop_mlp(model: FFN, layer: str, tr) -> torch.Tensor:
    """Original-style paper MLP rule: for each input i, the m per-target maps c_ij, summed, then phi."""
    idx = int(layer[5:]) - 1
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


def loop_head(model: NeRV, tr, n_in: int | None = None) -> torch.Tensor:
    x = tr.inputs["head"][0]
    W, b = model.head.weight, model.head.bias
    cin, k = W.shape[1], W.shape[-1]
    n_in = n_in or cin
    canvas = torch.empty(n_in * W.shape[0], *x.shape[-2:])
    for i in range(n_in):
        canvas[i * 3:(i + 1) * 3] = F.conv2d(x[i][None, None], W[:, i:i + 1], b / cin, padding=k // 2)[0]
    return canvas.abs().sum(0)


def _route_original(z: torch.Tensor, r: int) -> torch.Tensor:
    """Original-style routing of one input channel's (C*r^2, h, w) kernel maps to the shuffled grid: shuffle,
    repeat r^2 times, interleave the copies, zero every position whose sub-pixel is not the copy's."""
    shuffled = F.pixel_shuffle(z[None], r)[0]  # (C, rh, rw): all sub-pixels of channel c together
    C = shuffled.shape[0]
    rep = shuffled.repeat(r * r, 1, 1)  # copy j of channel c at j*C + c
    rep = rep.view(r * r, C, *rep.shape[-2:]).transpose(0, 1).reshape(C * r * r, *rep.shape[-2:])  # c*r^2 + j
    sub = torch.zeros(rep.shape[-2:], dtype=torch.long)
    for s1 in range(r):
        for s2 in range(r):
            sub[s1::r, s2::r] = s1 * r + s2
    for j in range(r * r):
        rep[j::r * r][:, sub != j] = 0
    return rep


def loop_block(model: NeRV, tr, bi: int, n_in: int | None = None, tidy: bool = False) -> torch.Tensor:
    """Paper block rule the direct way: per input channel conv -> PixelShuffle routing -> GELU -> box filter /
    nearest upsampling + GELU per downstream layer, the whole canvas kept. tidy=True routes by strided
    assignment instead of the original's repeat-and-mask."""
    blk = model.blocks[bi]
    u = tr.inputs[f"block{bi + 1}"][0]
    W, b, r = blk.conv.weight, blk.conv.bias, blk.stride
    cout, cin, k, _ = W.shape
    n_in = n_in or cin
    H, Wd = model.config.height, model.config.width
    canvas = torch.empty(n_in * cout, H, Wd)
    for i in range(n_in):
        z = F.conv2d(u[i][None, None], W[:, i:i + 1], b / cin, padding=k // 2)[0]  # (cout, h, w)
        if tidy:
            R = torch.zeros(cout, z.shape[1] * r, z.shape[2] * r)
            for s1 in range(r):
                for s2 in range(r):
                    s = s1 * r + s2
                    R[s::r * r, s1::r, s2::r] = z[s::r * r]
        else:
            R = _route_original(z, r)
        A = F.gelu(R)
        for nxt in model.blocks[bi + 1:]:
            A = _box(A, nxt.conv.kernel_size[0])
            A = F.gelu(F.interpolate(A[None], scale_factor=nxt.stride, mode="nearest")[0])
        canvas[i * cout:(i + 1) * cout] = _box(A, model.head.kernel_size[0])
    return canvas.abs().sum(0)


# ------------------------------------------------------------------ engine


def engine_heat(model, layer: str, tr, neurons=None, budget=None, fused: bool = True) -> torch.Tensor:
    """Heat map of frame 0 from the same forward pass as the loops, streamed chunk by chunk (fused=True lets
    the MLP rule reduce in pixel tiles without forming maps, as stream_canvas does by default)."""
    red = HeatMap()
    frame = 0
    stream_canvas(model, layer, [frame], red, neurons=neurons, memory_budget_mb=budget, trace=tr, fused=fused)
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


# ------------------------------------------------------------------ machine bounds


def machine_peaks(device: torch.device) -> dict[str, float]:
    """Measured in this run: float32 GEMM FLOP/s (the arithmetic ceiling the vector units reach) and copy
    bandwidth in bytes/s (one read + one write of 64 MiB), fastest of a few tries."""
    def best(fn, n=5):
        out = []
        for _ in range(n):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            out.append(time.perf_counter() - t0)
        return min(out)

    a = torch.randn(1024, 1024, device=device)
    x, y = torch.empty(1 << 24, device=device), torch.empty(1 << 24, device=device)
    x.normal_()
    flops = 2 * 1024**3 / best(lambda: a @ a)
    bw = 2 * x.numel() * 4 / best(lambda: y.copy_(x))
    return {"flops": flops, "bandwidth": bw}


def layer_work(model, layer: str, n_neurons: int) -> tuple[float, float]:
    """(FLOPs, bytes) of one frame's heat map of `n_neurons` neurons, counted the way the fused engine path does
    the rule: MLP 4 flops per neuron x pixel (multiply-add, activation, |.| and sum); conv head 2k^2 + 2 per kernel
    x pixel; paper block: the neuron's coarse conv, then per stage the separable box filter (2 passes x 2 taps x
    2 flops per pixel), the activation (8 flops, GELU) and at the end |.| and the sum. Bytes: the layer input read
    once and the heat map written once (the least any implementation moves)."""
    info = layer_info(model, layer)
    P = info.height * info.width
    if layer.startswith("layer"):
        a = model.config.height * model.config.width * info.c_in * 4
        return 4.0 * n_neurons * P, float(a + 4 * P)
    if layer == "head":
        k = model.head.kernel_size[0]
        return (2.0 * k * k + 2) * n_neurons * P, float(model.head.in_channels * P * 4 + 4 * P)
    bi = int(layer[5:]) - 1
    blk = model.blocks[bi]
    k = blk.conv.kernel_size[0]
    up = 1
    for b in model.blocks[bi:]:
        up *= b.stride
    h, w = info.height // up, info.width // up  # the block's input grid
    nbytes = float(blk.conv.in_channels * h * w * 4 + 4 * P)
    per = 2.0 * k * k * h * w
    for b in model.blocks[bi:]:
        h, w = h * b.stride, w * b.stride
        per += (8 + 8) * h * w
    return (per + 2 * P) * n_neurons, nbytes


def bound_text(flops: float, nbytes: float, peaks: dict[str, float]) -> tuple[float, str]:
    tf, tb = flops / peaks["flops"], nbytes / peaks["bandwidth"]
    return max(tf, tb), "flop" if tf >= tb else "mem"


def all_layers(model, device: torch.device, frame_embedding=None, label: str = "") -> list[dict]:
    """Heat map + neuron totals of every layer of one frame on `device` (engine only, fused path): seconds, peak
    RSS increase (CPU) or peak allocated (CUDA) per layer; the per-frame total is their sum."""
    from xinc.canvas import NeuronTotals

    rows = []
    model = model.to(device)
    with torch.no_grad():
        tr = model.trace_embedding(frame_embedding.to(device)) if frame_embedding is not None else None
    for layer in model.layer_names:
        def run(layer=layer):
            reds = [HeatMap(), NeuronTotals()]
            stream_canvas(model, layer, [0], reds, trace=tr)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            return reds

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        _, t, c, mem = measure(run)
        if device.type == "cuda":
            mem = torch.cuda.max_memory_allocated(device)
        n = layer_info(model, layer).num_neurons
        rows.append({"case": f"{label} {layer}", "maps": n, "seconds": round(t, 3), "cpu_s": round(c, 3),
                     "peak_mb": round(mem / 2**20, 1)})
        print(f"{label} {layer:8s} {n:7d} maps  {t:8.2f}s wall {c:8.2f}s cpu  peak {mem / 2**20:8.0f} MiB",
              flush=True)
    print(f"{label} all layers, one frame: {sum(r['seconds'] for r in rows):.1f}s wall on {device}", flush=True)
    return rows


# ------------------------------------------------------------------ driver


BOUNDS: dict[str, tuple[float, str]] = {}


def run_case(name: str, loops: dict, engines: dict, n_maps: int, rows: list[dict]) -> None:
    """Time every engine variant ({suffix: fn}) and then the loop baselines once, all from the same forward
    pass. Engines go first so their peak RSS is not hidden by memory a loop freed (the allocator keeps it)."""
    with torch.no_grad():
        runs = {suffix: measure(fn, min_cpu=1.0) for suffix, fn in engines.items()}
        refs = {tag: measure(fn, min_cpu=2.0) for tag, fn in loops.items()}  # short loops repeated too
        for suffix, (got, t_eng, c_eng, m_eng) in runs.items():
            row = {"case": name + suffix, "maps": n_maps}
            if name in BOUNDS:
                row.update(bound_s=BOUNDS[name][0], bound_by=BOUNDS[name][1])
            row.update(engine_s=round(t_eng, 3), engine_cpu_s=round(c_eng, 3),
                       engine_peak_mb=round(m_eng / 2**20, 1))
            for tag, (ref, t_loop, c_loop, m_loop) in refs.items():
                err = ((got - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()
                row.update({f"{tag}_s": round(t_loop, 3), f"{tag}_cpu_s": round(c_loop, 3),
                            f"{tag}_speedup": round(c_loop / max(c_eng, 1e-4), 1),
                            f"{tag}_wall_speedup": round(t_loop / max(t_eng, 1e-4), 1),
                            f"{tag}_peak_mb": round(m_loop / 2**20, 1),
                            f"{tag}_memory_ratio": round(m_eng / m_loop, 3) if m_loop else None,
                            f"{tag}_heat_rel_diff": float(f"{err:.2e}")})
            rows.append(row)
            parts = [f"{row['case']:44s} {n_maps:6d} maps  engine {row['engine_cpu_s']:7.3f}s cpu "
                     f"{row['engine_s']:7.3f}s wall ({row['engine_peak_mb']:.0f} MiB)"]
            if "bound_s" in row:
                parts.append(f"bound {row['bound_s']:.3f}s ({row['bound_by']}, wall x{t_eng / row['bound_s']:.1f})")
            for tag in loops:
                parts.append(f"{tag} {row[tag + '_cpu_s']:7.2f}s x{row[tag + '_speedup']:6.1f} "
                             f"(wall x{row[tag + '_wall_speedup']:.1f}) "
                             f"({row[tag + '_peak_mb']:.0f} MiB, mem x{row[tag + '_memory_ratio']}) "
                             f"diff {row[tag + '_heat_rel_diff']:.0e}")
            print("  ".join(parts), flush=True)


STREAMED = " (maps streamed)"


# complexity accepted: one flag-driven table of cases; split when the benchmark is next extended
def main(argv: list[str] | None = None) -> int:  # noqa: C901
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="sample block1 and the 640x1280 layers (about a minute)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: xinc's policy, the cores available, OMP_WAIT_POLICY=PASSIVE)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda: cuda times the engine on the GPU (paper NeRV "
                                                    "block1 and every layer of the 640x1280 decoder, per frame)")
    ap.add_argument("--all-layers", default=None, metavar="MODEL_DIR|synthetic",
                    help="time heat + totals of every layer of one frame of this model directory (e.g. an imported "
                         "HNeRV) or of the synthetic 640x1280 decoder, then exit")
    ap.add_argument("--tidy", action="store_true", help="also time a tidier loop (strided routing, no masks)")
    ap.add_argument("--skip-640", action="store_true", help="skip the 640x1280 decoder")
    ap.add_argument("--only", default=None, help="comma-separated cases to run, e.g. 'ffn layer3,nerv block1' "
                                                   "(prefix match on the case name; default all)")
    ap.add_argument("--budget-mb", type=float, default=None, help="engine memory budget per chunk (default 256)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    device = torch.device(args.device)
    rows: list[dict] = []
    peaks = machine_peaks(device)
    print(f"torch {torch.__version__}, {args.threads} threads, quick={args.quick}, device {device}; measured peaks: "
          f"{peaks['flops'] / 1e9:.0f} GFLOP/s (float32 GEMM), {peaks['bandwidth'] / 1e9:.1f} GB/s (copy)", flush=True)
    if args.all_layers or device.type == "cuda":
        return gpu_or_all_layers(args, device)

    ffn = paper_ffn()
    with torch.no_grad():
        tr = ffn.trace()
    only = None if args.only is None else [c.strip() for c in args.only.split(",") if c.strip()]
    if kernels.available():  # one-time cost, reported rather than hidden in the min of repeats
        t0 = time.perf_counter()
        for layer in ffn.layer_names:
            engine_heat(ffn, layer, tr)
        nerv = paper_nerv()  # and the paper block rule's kernel (two maps of block1)
        with torch.no_grad():
            engine_heat(nerv, "block1", nerv.trace_embedding(nerv.embed([0])), neurons=(0, 2))
        first = time.perf_counter() - t0
        print(f"compiled CPU kernels ({kernels.backend()}): first FFN and NeRV block calls took {first:.2f} s "
              "(import, and JIT compile or on-disk cache load; once per process)", flush=True)
    else:
        print("compiled CPU kernels: not available (numba missing); eager PyTorch tiles", flush=True)

    def wanted(case: str) -> bool:
        return only is None or any(case.startswith(o) for o in only)

    for layer in ffn.layer_names:
        if not wanted(f"ffn {layer}"):
            continue
        n = layer_info(ffn, layer).num_neurons
        BOUNDS[f"ffn {layer}"] = bound_text(*layer_work(ffn, layer, n), peaks)
        engines = {sfx: lambda layer=layer, fused=fused: engine_heat(ffn, layer, tr, budget=args.budget_mb,
                                                                     fused=fused)
                   for sfx, fused in (("", True), (STREAMED, False))}
        loops = {"closed": lambda layer=layer: closed_mlp(ffn, layer, tr),  # the baseline the claims use
                 "original": lambda layer=layer: loop_mlp(ffn, layer, tr)}  # per-target loop, reported apart
        run_case(f"ffn {layer}", loops, engines, n, rows)

    for label, model, emb, layers in (
        ("nerv", paper_nerv(), None, ["head", "block3", "block2", "block1"]),
        ("640x1280", hnerv_640(), "table", ["head", "block5"]),
    ):
        if (label == "640x1280" and args.skip_640) or not any(wanted(f"{label} {la}") for la in layers):
            continue
        e = model.embed([0]) if emb is None else model.embeddings[:1]
        with torch.no_grad():
            tr = model.trace_embedding(e)
        for layer in layers:
            if not wanted(f"{label} {layer}"):
                continue
            info = layer_info(model, layer)
            n_in = info.c_in
            if label == "nerv" and layer == "block1" and args.quick:
                n_in = 4
            if label == "640x1280":
                n_in = {"head": 28, "block5": 2}[layer] if not args.quick else {"head": 4, "block5": 1}[layer]
            nb = (0, n_in * info.c_out)
            tag = f"{label} {layer}" + ("" if n_in == info.c_in else f" ({n_in}/{info.c_in} c_in)")
            BOUNDS[tag] = bound_text(*layer_work(model, layer, nb[1]), peaks)
            if layer == "head":
                loops = {"loop": lambda model=model, tr=tr, n_in=n_in: loop_head(model, tr, n_in)}
            else:
                bi = int(layer[5:]) - 1
                loops = {"loop": lambda model=model, tr=tr, bi=bi, n_in=n_in: loop_block(model, tr, bi, n_in)}
                if args.tidy:
                    loops["tidy"] = lambda model=model, tr=tr, bi=bi, n_in=n_in: loop_block(model, tr, bi, n_in, True)
            variants = (("", True), (STREAMED, False))
            engines = {sfx: lambda model=model, layer=layer, nb=nb, tr=tr, fused=fused: engine_heat(
                model, layer, tr, neurons=nb, budget=args.budget_mb, fused=fused) for sfx, fused in variants}
            run_case(tag, loops, engines, nb[1], rows)

    def pick(prefix: str, streamed: bool) -> list[dict]:
        return [r for r in rows if r["case"].startswith(prefix) and (STREAMED in r["case"]) == streamed]

    summary = {"targets": "block1 >= 5x with memory ratio <= 0.25 (process CPU time, same trace); FFN ratios "
                          "against the vectorised closed form (closed) and the per-target loop (original)"}
    if pick("ffn", False):
        summary.update(ffn_min_speedup=min(r["closed_speedup"] for r in pick("ffn", False)),
                       ffn_min_wall_speedup=min(r["closed_wall_speedup"] for r in pick("ffn", False)),
                       ffn_maps_streamed_min_speedup=min(r["closed_speedup"] for r in pick("ffn", True)),
                       ffn_original_style_min_speedup=min(r["original_speedup"] for r in pick("ffn", False)))
    if pick("nerv block1", False):
        b1, b1_maps = pick("nerv block1", False)[0], pick("nerv block1", True)[0]
        summary.update(block1_speedup=b1["loop_speedup"], block1_memory_ratio=b1["loop_memory_ratio"],
                       block1_maps_streamed_speedup=b1_maps["loop_speedup"],
                       block1_maps_streamed_memory_ratio=b1_maps["loop_memory_ratio"])
    print(json.dumps(summary), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary, "threads": args.threads,
                                         "quick": args.quick}, indent=2))
    return 0


def gpu_or_all_layers(args, device: torch.device) -> int:
    """--device cuda: paper NeRV block1 and all layers of the 640x1280 decoder on the GPU; --all-layers: one model."""
    rows = []
    if args.all_layers not in (None, "synthetic"):
        from xinc.models.io import load_model

        model = load_model(args.all_layers, "cpu")
        emb = model.embed([0])
        rows += all_layers(model, device, emb, Path(args.all_layers).name)
    else:
        if device.type == "cuda":
            nerv = paper_nerv().to(device)
            rows += [r for r in all_layers(nerv, device, nerv.embed([0]), "nerv") if r["case"].endswith("block1")]
        m = hnerv_640()
        rows += all_layers(m, device, m.embeddings[:1], "640x1280")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "device": str(device), "threads": args.threads}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
