"""`ReportConfig` and `write_report(cfg)`: the settings and entry point of `xinc report`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import tyro


@dataclass
class ReportConfig:
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

    def target(self) -> Path:
        """The HTML file this config writes."""
        return Path(self.out) if self.out is not None else Path(self.run_dir) / "report.html"


def write_report(cfg: ReportConfig) -> Path:
    """Write the report `cfg` describes; returns the HTML file's path."""
    from xinc.report.html import build_report

    return build_report(cfg.run_dir, cfg.target(), title=cfg.title)
