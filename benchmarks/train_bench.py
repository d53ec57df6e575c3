"""Time the training loops at the paper sizes: FFN steps (128x256) and NeRV epochs (30 frames, 978,557 params).

Runs the real `xinc.train` code path on generated frames and prints steps/s (training time only;
evaluation and checkpoints excluded) and the extrapolated time of the paper recipes.
Usage: .venv/bin/python benchmarks/train_bench.py [--ffn-steps 200] [--nerv-epochs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time

import torch

from xinc.train import TrainFFNConfig, TrainNeRVConfig, train_ffn, train_nerv


def generated_video(t: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """(T, 3, H, W) in [0, 1]: drifting sinusoids plus seeded noise texture (image-like, not constant)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, h)[:, None]
    x = torch.linspace(0, 1, w)[None, :]
    noise = torch.rand(3, h, w, generator=g) * 0.2
    out = []
    for k in range(t):
        s = k / t
        base = torch.stack([
            0.5 + 0.3 * torch.sin(2 * math.pi * (3 * x + s)) * torch.cos(2 * math.pi * y),
            0.5 + 0.3 * torch.cos(2 * math.pi * (2 * y - s) + 0 * x),
            0.5 + 0.3 * torch.sin(2 * math.pi * (5 * (x + y) + 2 * s)),
        ])
        out.append((base + torch.roll(noise, shifts=k, dims=2) - 0.1).clamp(0, 1))
    return torch.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ffn-steps", type=int, default=200, help="FFN steps to time (paper recipe: 1000)")
    ap.add_argument("--nerv-epochs", type=int, default=3, help="NeRV epochs to time (paper recipe: 1000)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--device", default="cpu", help="cpu | cuda[:i] | auto")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    print("note: wall-clock numbers depend on how busy the CPU is; the load average is printed for context")
    print(f"torch {torch.__version__}, {a.threads} threads, device {a.device}, load average {load}")
    with tempfile.TemporaryDirectory() as tmp:
        img = generated_video(1, 128, 256)[0]
        cpu0 = time.process_time()
        m = train_ffn(TrainFFNConfig(out=f"{tmp}/ffn", steps=a.ffn_steps, eval_every=a.ffn_steps, device=a.device,
                                     progress=False), target=img).metrics
        sps = m["steps_per_s"]
        cpu_ffn = (time.process_time() - cpu0) / a.ffn_steps
        print(f"FFN  paper size (128x256, {m['num_params']:,} params): {a.ffn_steps} steps, {sps:.2f} steps/s "
              f"-> 1000 steps ~ {1000 / sps:.1f} s (PSNR after {a.ffn_steps} steps {m['best_psnr']:.2f} dB); "
              f"CPU time {cpu_ffn * 1e3:.0f} ms/step (all threads, incl. eval)")
        video = generated_video(30, 128, 256)
        cpu0 = time.process_time()
        m = train_nerv(TrainNeRVConfig(out=f"{tmp}/nerv", epochs=a.nerv_epochs, eval_every=a.nerv_epochs,
                                       device=a.device, progress=False), frames=video).metrics
        spe = m["s_per_epoch"]
        cpu_nerv = (time.process_time() - cpu0) / a.nerv_epochs
        print(f"NeRV paper size (30x128x256, {m['num_params']:,} params, batch 2 = 15 steps/epoch): "
              f"{a.nerv_epochs} epochs, {m['steps_per_s']:.2f} steps/s, {spe:.2f} s/epoch "
              f"-> 1000 epochs ~ {1000 * spe / 60:.1f} min (training only); CPU time {cpu_nerv:.2f} s/epoch "
              "(all threads, incl. eval)")


if __name__ == "__main__":
    main()
