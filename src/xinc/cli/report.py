"""`xinc report RUN_DIR --out report.html`: one self-contained HTML report from `xinc analyze` output."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro

from xinc.cli.common import parse


@dataclass
class ReportOptions:
    """Build one self-contained HTML file (images embedded, no server, no network) from an `xinc analyze` run
    directory, or from a folder holding several runs (e.g. the demo's ffn/ and nerv/, one section per model):
    model and data summary, reconstruction quality, canvases of sampled neurons, every analysis (A1-A6) with
    its figures and key numbers, completeness residuals, and the commands/config that produced it."""

    run_dir: tyro.conf.Positional[Path]
    """an `xinc analyze` output folder, or a folder of them"""
    out: Path | None = None
    """HTML file to write (default RUN_DIR/report.html)"""
    title: str | None = None
    """page title (default: 'xinc report — <folder name>')"""


def run(argv: list[str], prog: str) -> int:
    """Entry point of `xinc report`."""
    from xinc.report.html import build_report

    o = parse(ReportOptions, argv, prog)
    out = o.out if o.out is not None else o.run_dir / "report.html"
    path = build_report(o.run_dir, out, title=o.title)
    size = path.stat().st_size / 2**20
    print(f"wrote {path} ({size:.1f} MB, self-contained; open it in any browser)")
    return 0
