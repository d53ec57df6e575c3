"""Figures of analysis results: one module per analysis id registers `plot(result, out) -> [FigureRef]`.

`xinc analyze` calls `draw(aid, result, out)` after the analysis; the figures land in
OUT/figures/<aid>/<name>.png and .pdf, and their captions in the `figures` list of the analysis' section
of results.json, which the HTML report reads. A plot only reads the AnalysisResult (numbers, arrays,
tables) it is given, so figures can be redrawn later from a saved run (`xinc.analysis.load_result`).
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xinc.utils import atomic_save


@dataclass
class FigureRef:
    """A written figure: its PNG path (a PDF lies beside it) and caption."""

    path: Path
    caption: str

    def as_json(self, root: Path) -> dict[str, str]:
        """{'path': path relative to root, 'caption': ...} as stored in results.json."""
        return {"path": os.path.relpath(self.path, root), "caption": self.caption}


PLOTS: dict[str, Callable[[Any, Path], list[FigureRef]]] = {}


def register_plot(aid: str):
    """Decorator: register `plot(result, out) -> list[FigureRef]` as the figures of analysis `aid`."""

    def deco(fn):
        PLOTS[aid] = fn
        return fn

    return deco


def discover() -> dict[str, Callable[[Any, Path], list[FigureRef]]]:
    """Import every module of xinc.report.plots so that its plot registers; return the registry."""
    import xinc.report.plots as pkg

    for m in pkgutil.iter_modules(pkg.__path__):
        name = f"{pkg.__name__}.{m.name}"
        if not m.name.startswith("_") and name not in sys.modules:
            importlib.import_module(name)
    return PLOTS


def draw(aid: str, result: Any, out: str | Path) -> list[FigureRef]:
    """The figures of one analysis result under out/figures/<aid>/ ([] when no plot is registered)."""
    fn = discover().get(aid)
    return [] if fn is None else list(fn(result, Path(out)))


def save_figure(fig, out: Path, aid: str, name: str, caption: str) -> FigureRef:
    """Save a matplotlib figure as out/figures/<aid>/<name>.png and .pdf (atomically), close it."""
    import matplotlib.pyplot as plt

    folder = Path(out) / "figures" / aid
    folder.mkdir(parents=True, exist_ok=True)
    for ext in ("png", "pdf"):
        atomic_save(folder / f"{name}.{ext}", lambda p, e=ext: fig.savefig(p, format=e, dpi=120, bbox_inches="tight"))
    plt.close(fig)
    return FigureRef(folder / f"{name}.png", caption)
