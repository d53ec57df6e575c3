"""`ExploreConfig` and `write_explorer(cfg)`: the settings and entry point of `xinc explore`."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from xinc.errors import XincError


@dataclass
class ExploreConfig:
    """Write one self-contained HTML page (inline JS/CSS, no network, opens from a file) to explore an `xinc analyze`
    run or a folder of runs: pick model, layer and frame; hover/click a pixel for its top-k signed contributing
    neurons and the share they hold; click a neuron for its map through the frames and its A3/A5/A6 numbers. The
    embedded data is precomputed and bounded (pooled maps, top-k per pixel, quantised); the page states it."""

    run_dir: tyro.conf.Positional[Path]
    """an `xinc analyze` output folder, or a folder of them (e.g. a demo)"""
    out: Path | None = None
    """HTML file to write (default RUN_DIR/explorer.html)"""
    mode: Literal["paper", "linear"] = "paper"
    """canvas rule of the maps"""
    seed: int | None = None
    """seed of the neuron sample (default: the run's seed, so the same neurons as its report and videos)"""
    width: int = 128
    """pooled map width in pixels"""
    topk: int = 8
    """neurons listed per pixel"""
    frames: int = 6
    """frames per model (spread over the analysed ones)"""
    maps: int = 24
    """neurons per layer whose maps are embedded"""
    sampled: int = 6
    """of which seeded samples"""
    max_mb: float = 20.0
    """size budget of the embedded data"""
    title: str | None = None
    """page title"""
    progress: bool = True
    """tqdm progress bar (maps done) on stderr"""

    def __post_init__(self) -> None:
        """The limits, checked when the config is made."""
        for name in ("width", "topk", "frames", "maps"):
            if getattr(self, name) < 1:
                raise XincError(f"--{name} {getattr(self, name)}: must be at least 1")
        if self.sampled < 0 or self.max_mb <= 0:
            raise XincError("--sampled must be >= 0 and --max-mb positive")

    def target(self) -> Path:
        """The HTML file this config writes."""
        return Path(self.out) if self.out is not None else Path(self.run_dir) / "explorer.html"


def write_explorer(o: ExploreConfig) -> Path:
    """Write the explorer page `o` describes (every refusal before any work); returns the HTML file's path."""
    from tqdm.auto import tqdm

    from xinc.explore.build import build_explorer
    from xinc.explore.data import ExploreLimits
    from xinc.report.html import find_runs
    from xinc.video.output import check_html_target

    if not Path(o.run_dir).is_dir():
        raise XincError(f"{o.run_dir}: not a folder; give an `xinc analyze` output folder")
    lim = ExploreLimits(width=o.width, topk=o.topk, frames=o.frames, maps=o.maps, sampled=o.sampled)
    out = o.target()
    find_runs(o.run_dir)  # every refusal before any work (and before the progress bar)
    check_html_target(out, inputs=[o.run_dir])
    bar = tqdm(desc="explore", unit="map", disable=not o.progress, file=sys.stderr, dynamic_ncols=True)
    try:
        return build_explorer(o.run_dir, out, lim=lim, seed=o.seed, mode=o.mode, max_mb=o.max_mb, title=o.title,
                              progress=bar.update)
    finally:
        bar.close()
