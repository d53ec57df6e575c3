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

from xinc.canvas.reduce import LayerInfo, Reducer
from xinc.errors import XincError
from xinc.utils import atomic_save

# analysis mode -> (variant, canvas mode) pairs: faithful = paper canvas + the paper's statistics,
# corrected = exact linear canvas + the corrected statistics (SPEC §4).
VARIANTS = {"faithful": [("faithful", "paper")], "corrected": [("corrected", "linear")],
            "both": [("faithful", "paper"), ("corrected", "linear")]}


def variants(mode: str) -> list[tuple[str, str]]:
    """The (variant, canvas_mode) pairs an analysis mode asks for."""
    if mode not in VARIANTS:
        raise XincError(f"--mode {mode!r}: choose faithful, corrected or both")
    return VARIANTS[mode]


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
    canvases: dict[str, Any] | None = None  # {canvas_mode: {layer: (T,K,H,W)}} or {layer: ...}: analyse given maps
    canvas_log: dict[str, dict[str, Any]] = field(default_factory=dict)  # {mode/layer: info + residuals seen}
    progress: Callable[[int], Any] | None = None  # called with the number of neuron maps streamed (tqdm.update)
    memo: Any = None  # xinc.canvas.memo.CanvasMemo: canvases computed once across passes and analyses (None: off)

    def stream(self, layer: str, reducers: list, canvas_mode: str = "paper", frames: list[int] | None = None):
        """Drive `reducers` over every neuron chunk of every frame of `layer` (engine, or ctx.canvases).

        Frames default to ctx.frames; with ctx.canvases set, frame f is row ctx.frames.index(f)
        of the given tensor. The layer's info and per-frame residuals are logged in canvas_log.
        """
        frames = list(self.frames if frames is None else frames)
        log = _InfoLog()
        reducers = [*reducers, log]
        if self.canvases is not None:
            given = self.canvases.get(canvas_mode, self.canvases)
            if layer not in given:
                raise XincError(f"canvases: no {canvas_mode!r} maps for layer {layer!r}; give them or use a model")
            maps = torch.as_tensor(given[layer])
            maps = maps[None] if maps.dim() == 3 else maps  # one frame given as (K, H, W)
            rows = [self.frames.index(f) for f in frames]
            stream_tensors(maps[rows], reducers, frames=frames, layer=layer, chunk=self.chunk_neurons,
                           mode=canvas_mode)
        elif self.memo is not None:
            self.memo.stream(self.model, layer, frames, reducers, mode=canvas_mode, chunk_neurons=self.chunk_neurons,
                             memory_budget_mb=self.memory_budget_mb, device=self.device, progress=self.progress)
        else:
            from xinc.canvas import stream_canvas

            stream_canvas(self.model, layer, frames, reducers, mode=canvas_mode, chunk_neurons=self.chunk_neurons,
                          memory_budget_mb=self.memory_budget_mb, device=self.device, progress=self.progress)
        entry = self.canvas_log.setdefault(f"{canvas_mode}/{layer}", {"residual": {}})
        entry.update(log.summary())
        entry["residual"].update(log.residuals)
        return reducers[:-1]

    def option(self, aid: str, name: str, default: Any) -> Any:
        """Per-analysis option: ctx.options[aid][name] wins over ctx.options[f'{aid}_{name}'], else default."""
        nested = self.options.get(aid)
        if isinstance(nested, dict) and name in nested:
            return nested[name]
        return self.options.get(f"{aid}_{name}", default)

    def options_into(self, aid: str, opts: Any) -> Any:
        """Fill the fields of the options dataclass `opts` from ctx.option(aid, field), cast to each default's type."""
        for name in type(opts).__dataclass_fields__:
            value = self.option(aid, name, None)
            if value is not None:
                setattr(opts, name, _coerce(getattr(opts, name), value))
        return opts

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


class _InfoLog(Reducer):
    """Reducer that records the layer info and each frame's completeness residual (no map data)."""

    def __init__(self) -> None:
        self.info = None
        self.residuals: dict[str, dict[str, float]] = {}

    def begin_frame(self, info, frame: int) -> None:
        self.info, self.frame = info, frame

    def update(self, start: int, maps: torch.Tensor) -> None:
        pass

    def end_frame(self) -> None:
        self.residuals[str(self.frame)] = dict(getattr(self.info, "residual", {}) or {})

    def summary(self) -> dict[str, Any]:
        i = self.info
        if i is None:
            return {}
        return {"exact": bool(i.exact), "rule": i.rule, "num_neurons": int(i.num_neurons),
                "height": int(i.height), "width": int(i.width), "notes": getattr(i, "notes", "")}


def stream_tensors(maps: torch.Tensor, reducers: list, *, frames: list[int] | None = None, layer: str = "given",
                   chunk: int | None = None, mode: str = "given") -> list:
    """Drive reducers over given canvases `maps` (T, K, H, W) in neuron chunks, like the canvas engine.

    For the Python API on ready-made canvases and for tests on constructed ones.
    """
    if maps.dim() == 3:
        maps = maps[None]
    if maps.dim() != 4:
        raise XincError(f"canvases: expected (T, K, H, W) maps, got shape {tuple(maps.shape)}")
    T, K, H, W = maps.shape
    frames = list(range(T)) if frames is None else list(frames)
    step = max(1, int(chunk or K))
    for t, f in enumerate(frames):
        info = LayerInfo(name=layer, num_neurons=K, height=H, width=W, exact=True, rule=f"given ({mode})")
        for r in reducers:
            r.begin_frame(info, f)
        for s in range(0, K, step):
            part = maps[t, s:s + step]
            for r in reducers:
                r.update(s, part)
        for r in reducers:
            r.end_frame()
    return reducers


def _coerce(default: Any, value: Any) -> Any:
    """Cast an option value to the type of its default ('false'/'0' are False for booleans)."""
    if isinstance(default, bool):
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
    return type(default)(value)
