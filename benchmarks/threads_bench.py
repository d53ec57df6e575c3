"""Threads that help, never hurt: the same canvas layer at 1 thread and at the default thread count, on an idle
machine and under an artificial background load (bounded busy processes), with xinc's thread policy
(xinc.threads: OMP_WAIT_POLICY=PASSIVE, threads = cores available) and with torch's bare defaults (spinning
OpenMP workers).

Each measurement runs in a fresh child process (the OpenMP wait policy is read when torch starts), repeated and
the fastest wall time kept. Printed: seconds and the ratio t(default threads) / t(1 thread) per setting; a ratio
<= 1 means the extra threads help (or at least do not hurt). Ratios, not absolute times, are the result: the
machine is shared.

    .venv/bin/python benchmarks/threads_bench.py                 # load = as many busy processes as cores
    .venv/bin/python benchmarks/threads_bench.py --load 0 --case "ffn layer1"
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CASES = ("nerv block1", "nerv head", "ffn layer1", "ffn layer1 linear")


def child(case: str, threads: int | None, policy: bool, repeats: int) -> dict:
    """Run in a child process: time one frame's heat map of `case` (fastest of `repeats`)."""
    if policy:
        from xinc.threads import configure_threads

        configure_threads()
    import torch

    from xinc.canvas import HeatMap, stream_canvas
    from xinc.models import FFN, FFNConfig, NeRV, NeRVConfig

    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    if case.startswith("nerv"):
        model = NeRV(NeRVConfig()).eval()
        layer = case.split()[1]
        neurons = (0, 4 * model.blocks[0].conv.out_channels) if layer == "block1" else None  # 4 of 37 c_in
        mode = "paper"
    else:
        model = FFN(FFNConfig(), generator=torch.Generator().manual_seed(0)).eval()
        layer, neurons = "layer1", None
        mode = "linear" if case.endswith("linear") else "paper"
    times = []
    for i in range(max(1, repeats) + 1):  # the first call warms caches (and numba's JIT): not counted
        t0 = time.perf_counter()
        stream_canvas(model, layer, [0], HeatMap(), mode=mode, neurons=neurons)
        if i:
            times.append(time.perf_counter() - t0)
    best = min(times)
    return {"case": case, "threads": torch.get_num_threads(), "seconds": best,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def spawn(case: str, threads: int | None, policy: bool, repeats: int) -> dict:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    env.pop("XINC_THREADS", None)
    cmd = [sys.executable, __file__, "--child", case, "--repeats", str(repeats)]
    cmd += ["--threads", str(threads)] if threads is not None else []
    cmd += [] if policy else ["--bare"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_load(n: int, seconds: float) -> list[subprocess.Popen]:
    """n busy processes that stop by themselves after `seconds` (and are terminated at the end anyway)."""
    code = f"import time\nt=time.time()+{seconds}\nwhile time.time()<t: pass\n"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", default="nerv block1,ffn layer1 linear", help=f"comma-separated, from {CASES}")
    ap.add_argument("--load", type=int, default=None, help="busy background processes (default: one per core)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-load-seconds", type=float, default=600.0, help="the load stops itself after this")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.threads, not args.bare, args.repeats)))
        return 0
    from xinc.threads import cores_available

    load = cores_available() if args.load is None else args.load
    cases = [c.strip() for c in args.case.split(",") if c.strip()]
    bad = [c for c in cases if c not in CASES]
    if bad:
        ap.error(f"unknown case {bad[0]!r}; choose from {', '.join(CASES)}")
    print(f"{cores_available()} cores available; background load: {load} busy process(es); fastest of "
          f"{args.repeats} runs per setting, each in a fresh process", flush=True)
    procs = start_load(load, args.max_load_seconds) if load else []
    rows = []
    try:
        for case in cases:
            for policy, label in ((True, "xinc policy"), (False, "torch defaults")):
                one = spawn(case, 1, policy, args.repeats)
                dflt = spawn(case, None, policy, args.repeats)
                ratio = dflt["seconds"] / one["seconds"]
                rows.append({"case": case, "setting": label, "load": load, "t1_s": round(one["seconds"], 3),
                             "default_threads": dflt["threads"], "tdefault_s": round(dflt["seconds"], 3),
                             "ratio_default_over_1": round(ratio, 2), "omp_wait_policy": dflt["omp_wait_policy"]})
                print(f"{case:20s} {label:15s} 1 thread {one['seconds']:7.3f}s  {dflt['threads']} threads "
                      f"{dflt['seconds']:7.3f}s  ratio {ratio:5.2f} (OMP_WAIT_POLICY={dflt['omp_wait_policy']})",
                      flush=True)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
