"""Analysis registry and the context every analysis receives (model, frames, labels, output paths).

An analysis is a function `fn(ctx) -> dict` registered under its SPEC id (a1..a6). It streams
canvases through the canvas engine, writes figures with ctx.figure and tables with ctx.table,
and returns plain JSON-able numbers, which `xinc analyze` stores under results.json[id].
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from xinc.utils import atomic_save


@dataclass
class AnalysisContext:
    """Inputs and output sinks shared by all analyses of one `xinc analyze` run."""

    model: torch.nn.Module
    model_dir: Path
    layers: list[str]
    frames: list[int]  # model frame indices analysed (FFN: [0])
    images: torch.Tensor  # (T, 3, H, W) ground truth aligned with `frames` (or the reconstruction)
    out: Path
    panoptic: Any = None  # xinc.data panoptic clip aligned with `frames`, or None
    flow: torch.Tensor | None = None  # (T-1, 2, H, W) flow from frames[i] to frames[i+1], or None
    mode: str = "both"  # "faithful" | "corrected" | "both"
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    chunk_neurons: int | None = None
    memory_budget_mb: float | None = None
    options: dict[str, Any] = field(default_factory=dict)  # per-analysis extras from the CLI

    def figure(self, aid: str, name: str, fig) -> Path:
        """Save a matplotlib figure as figures/<aid>/<name>.png and .pdf (atomically); close it."""
        import matplotlib.pyplot as plt

        folder = self.out / "figures" / aid
        folder.mkdir(parents=True, exist_ok=True)
        for ext in ("png", "pdf"):
            atomic_save(folder / f"{name}.{ext}", lambda p, e=ext: fig.savefig(p, format=e, dpi=120,
                                                                                 bbox_inches="tight"))
        plt.close(fig)
        return folder / f"{name}.png"

    def table(self, aid: str, name: str, rows: list[dict[str, Any]]) -> Path:
        """Write rows (dicts with the same keys) to tables/<aid>_<name>.csv."""
        path = self.out / "tables" / f"{aid}_{name}.csv"
        buf = io.StringIO()
        if rows:
            writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
            writer.writeheader()
            writer.writerows(rows)

        def write(p: Path) -> None:
            with open(p, "w", newline="") as f:
                f.write(buf.getvalue())

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(path, write)
        return path

    def rel(self, path: Path) -> str:
        return os.path.relpath(path, self.out)


@dataclass
class Analysis:
    id: str
    title: str
    fn: Callable[[AnalysisContext], dict[str, Any]]
    needs_panoptic: bool = False
    needs_flow: bool = False
    needs_video: bool = False


ANALYSES: dict[str, Analysis] = {}


def register_analysis(aid: str, title: str, *, needs_panoptic: bool = False, needs_flow: bool = False,
                      needs_video: bool = False):
    """Decorator: register `fn(ctx) -> dict` as analysis `aid` (e.g. 'a1')."""

    def deco(fn):
        ANALYSES[aid] = Analysis(aid, title, fn, needs_panoptic, needs_flow, needs_video)
        return fn

    return deco
