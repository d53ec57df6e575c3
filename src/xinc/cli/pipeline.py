"""`xinc demo --out DIR` (the whole pipeline on a generated clip) and `xinc run CONFIG` (many clips)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from xinc.cli.common import parse
from xinc.errors import XincError


def expand_bare_flags(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """`--quick` -> `--quick True`, `--no-progress` -> `--progress False` (bool options given bare)."""
    out: list[str] = []
    for i, tok in enumerate(argv):
        name = tok[2:] if tok.startswith("--") else None
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if name in names and (nxt is None or nxt.lower() not in ("true", "false")):
            out += [tok, "True"]
        elif name and name.startswith("no-") and name[3:] in names:
            out += [f"--{name[3:]}", "False"]
        else:
            out.append(tok)
    return out


@dataclass
class DemoOptions:
    """The whole pipeline end to end on generated data: a synthetic Cityscapes-VPS clip (exact flow and panoptic
    labels), the FFN trained on its first annotated frame and a NeRV on the clip, canvases, analyses A1-A6, the
    A6 comparison of the two architectures and one self-contained HTML report. About ten minutes on a 2-core CPU
    (--quick: tiny sizes, about a minute). Re-running skips finished steps. Everything is seeded from --seed."""

    out: Path = Path("runs/demo")
    """output folder (config.json, data/, models/, canvas/, ffn/, nerv/, report.html)"""
    seed: int = 0
    """seed of the data, the training and every analysis"""
    quick: bool = False
    """tiny sizes and step counts (the test suite runs this)"""
    device: str = "auto"
    """auto, cpu or cuda[:i]"""
    size: str | None = None
    """HxW of the clip and models (default 64x128; quick 32x64)"""
    frames: int | None = None
    """frames of the synthetic clip (default 10: annotated frames 4 and 9)"""
    progress: bool = True
    """show progress bars on stderr"""


def demo(argv: list[str], prog: str) -> int:
    """Entry point of `xinc demo`."""
    from xinc.pipeline import DemoConfig, run_demo
    from xinc.utils import parse_hw

    o = parse(DemoOptions, expand_bare_flags(argv, ("quick", "progress")), prog)
    size = list(parse_hw(o.size, "--size")) if o.size else None
    res = run_demo(DemoConfig(out=str(o.out), seed=o.seed, quick=o.quick, device=o.device, progress=o.progress,
                              size=size, frames=o.frames), argv=argv)
    print(f"demo finished in {res['seconds']:.0f} s ({len(res['steps_run'])} steps run, "
          f"{len(res['steps_skipped'])} skipped)")
    print(f"report: {Path(res['report']).resolve()}")
    return 0


@dataclass
class RunOptions:
    """Run the whole pipeline (train, canvas, analyze, compare, report) for many clips of a dataset from one
    config file (JSON, or TOML). Completed steps are skipped when re-run; changed settings rebuild only the
    affected steps. Keys: out, dataset, root | synthetic {videos, frames, seed, pan, things, size}, videos,
    size, seed, device, models, ffn {...}, nerv {...}, canvas {...}, analyze {...}, analyze_options
    {aid: {name: value}}, compare, report, progress (see the README, "Report, demo and pipeline")."""

    config: tyro.conf.Positional[Path]
    """pipeline config file (.json or .toml)"""
    out: Path | None = None
    """override the config's output folder"""
    backend: Literal["serial", "ray"] = "serial"
    """serial: one step after another; ray: one Ray task per clip and step (pip install 'xinc[ray]')"""
    address: str | None = None
    """Ray only: an existing cluster's address (default: a local Ray started for this run)"""
    max_retries: int = 2
    """Ray only: times a failed task is retried"""


def run(argv: list[str], prog: str) -> int:
    """Entry point of `xinc run`."""
    from xinc.pipeline import load_config, run_pipeline

    o = parse(RunOptions, argv, prog)
    cfg = load_config(o.config)
    if o.out is not None:
        cfg.out = str(o.out)
    if o.max_retries < 0:
        raise XincError(f"--max-retries {o.max_retries}: must be >= 0")
    if o.address is not None and o.backend != "ray":
        raise XincError("--address: only with --backend ray")
    res = run_pipeline(cfg, argv=argv, backend=o.backend, address=o.address, max_retries=o.max_retries)
    print(f"pipeline finished: {len(res['videos'])} clip(s), {len(res['steps_run'])} steps run, "
          f"{len(res['steps_skipped'])} skipped")
    if res.get("report"):
        print(f"report: {Path(res['report']).resolve()}")
    return 0
