"""Analysis plug-ins: the registry, typed options, the context every analysis receives, and results.

An analysis is one module under `xinc.analysis` that registers `run(ctx, opts) -> AnalysisResult`:

    @dataclass
    class A7Options:
        neurons: int = 64

    @register_analysis("a7", "Faithfulness", options=A7Options)
    def run(ctx: AnalysisContext, opts: A7Options) -> AnalysisResult: ...

It streams canvases with `ctx.stream(...)` and returns data only (numbers for results.json, arrays
for data/<aid>.npz, tables for tables/<aid>_<name>.csv, summary lines); figures are drawn by the
plot registered for the same id in `xinc.report.plots`. Modules are discovered with pkgutil.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import io
import pkgutil
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xinc.canvas.reduce import LayerInfo, Reducer
from xinc.config import coerce_basic
from xinc.errors import XincError
from xinc.utils import atomic_save, read_json, to_jsonable, write_json

# analysis variant -> canvas mode: "paper" = the paper's canvas + its statistics, "linear" = the exact
# linear canvas + the corrected statistics (SPEC §4). The two words are the canvas rule modes too.
VARIANT_MODES = ("paper", "linear")
VARIANTS = {"paper": [("paper", "paper")], "linear": [("linear", "linear")],
            "both": [("paper", "paper"), ("linear", "linear")]}
DEPRECATED_MODES = {"faithful": "paper", "corrected": "linear"}


def normalize_mode(mode: str, what: str = "--mode") -> str:
    """'paper' | 'linear' | 'both'; the old 'faithful'/'corrected' are mapped with a deprecation line on stderr."""
    if mode in DEPRECATED_MODES:
        new = DEPRECATED_MODES[mode]
        print(f"xinc: warning: {what} {mode} is deprecated and will be removed in the next release; "
              f"use {what} {new}", file=sys.stderr)
        return new
    if mode not in VARIANTS:
        raise XincError(f"{what} {mode!r}: not an analysis mode ; choose paper, linear or both")
    return mode


def variants(mode: str) -> list[tuple[str, str]]:
    """The (variant, canvas_mode) pairs an analysis mode asks for."""
    if mode not in VARIANTS and mode not in DEPRECATED_MODES:
        raise XincError(f"--mode {mode!r}: not an analysis mode ; choose paper, linear or both")
    return VARIANTS[DEPRECATED_MODES.get(mode, mode)]


@dataclass
class AnalysisResult:
    """What an analysis returns: JSON numbers, named arrays, named tables (rows of dicts), summary lines."""

    numbers: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    summary: list[str] = field(default_factory=list)
    title: str | None = None  # this run's wording of the title (e.g. one frame, not a clip); None: the registry's

    def section(self, title: str) -> dict[str, Any]:
        """The results.json section of this result: title (self.title when set), numbers and summary."""
        return {"title": self.title or title, **to_jsonable(self.numbers), "summary": list(self.summary)}


@dataclass
class AnalysisContext:
    """Inputs shared by all analyses of one run: model (or given canvases), frames, images, labels, flow."""

    model: torch.nn.Module | None
    model_dir: Path | None
    layers: list[str]
    frames: list[int]  # model frame indices analysed (FFN: [0])
    images: torch.Tensor  # (T, 3, H, W) ground truth aligned with `frames` (or the reconstruction)
    out: Path | None = None  # run folder (results are saved here by xinc.analysis.run)
    panoptic: Any = None  # xinc.data panoptic clip aligned with `frames`, or None
    flow: torch.Tensor | None = None  # (T-1, 2, H, W) flow from frames[i] to frames[i+1], or None
    flow_method: str = "given"  # how ctx.flow was obtained (recorded by A4)
    mode: str = "both"  # "paper" | "linear" | "both"
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    chunk_neurons: int | None = None
    memory_budget_mb: float | None = None
    label_frame_of: dict[int, int] | None = None  # model frame -> clip frame of its labels (default: same)
    canvases: dict[str, Any] | None = None  # {canvas_mode: {layer: (T,K,H,W)}} or {layer: ...}: analyse given maps
    canvas_log: dict[str, dict[str, Any]] = field(default_factory=dict)  # {mode/layer: info + residuals seen}
    progress: Callable[[int], Any] | None = None  # called with the number of neuron maps streamed (tqdm.update)
    memo: Any = None  # xinc.canvas.memo.CanvasMemo: canvases computed once across passes and analyses (None: off)
    inputs: Any = None  # a foreign model's forward arguments: canvases from the generic engine (xinc.explain)
    canvas_options: dict[str, Any] = field(default_factory=dict)  # extra explain() keywords (output=, layout=)

    def __post_init__(self) -> None:
        self.mode = DEPRECATED_MODES.get(self.mode, self.mode)
        variants(self.mode)

    def variants(self) -> list[tuple[str, str]]:
        """The (variant, canvas_mode) pairs of ctx.mode."""
        return variants(self.mode)

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
        elif self.inputs is not None:  # a foreign model: one traced point (frame 0)
            from xinc.canvas import explain_stream

            if frames != [0]:
                raise XincError(f"frames {frames}: a foreign model is analysed at one traced point (frame 0)")
            explain_stream(self.model, self.inputs, layer, reducers, canvas_mode, engine="generic",
                           chunk_neurons=self.chunk_neurons, memory_budget_mb=self.memory_budget_mb,
                           device=self.device, progress=self.progress,
                           **{k: v for k, v in self.canvas_options.items() if v is not None})
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

    def image(self, frame: int) -> torch.Tensor:
        """The (3, H, W) image of analysed model frame `frame`."""
        return self.images[self.frames.index(frame)]


def each_variant_layer(ctx: AnalysisContext, fn: Callable[[str, str, str], Any]) -> dict[str, dict[str, Any]]:
    """The shared variant × layer loop: {variant: {layer: fn(variant, canvas_mode, layer)}} in ctx order."""
    return {v: {layer: fn(v, cmode, layer) for layer in ctx.layers} for v, cmode in ctx.variants()}


@dataclass
class Analysis:
    """A registered analysis: id, title, `fn(ctx, opts)`, its options dataclass and what data it needs."""

    id: str
    title: str
    fn: Callable[[AnalysisContext, Any], AnalysisResult]
    options: type | None = None
    needs_panoptic: bool = False
    needs_flow: bool = False
    needs_video: bool = False
    module: str = ""
    streams: int = 1  # times it streams each layer's canvases: runs with several start with the most (see _analyse)


ANALYSES: dict[str, Analysis] = {}
UNAVAILABLE: dict[str, str] = {}  # module -> why it could not be imported (a missing optional dependency)


def register_analysis(aid: str, title: str, *, options: type | None = None, needs_panoptic: bool = False,
                      needs_flow: bool = False, needs_video: bool = False, streams: int = 1):
    """Decorator: register `fn(ctx, opts) -> AnalysisResult` as analysis `aid` (e.g. 'a1'); `streams`: how many
    times it streams each layer (multi-pass analyses run first, so later heat/totals-only ones replay the memo)."""
    if options is not None and not dataclasses.is_dataclass(options):
        raise TypeError(f"register_analysis({aid!r}): options must be a dataclass type")

    def deco(fn):
        if aid in ANALYSES and ANALYSES[aid].module != fn.__module__:
            raise ValueError(f"analysis id {aid!r} registered twice ({ANALYSES[aid].module}, {fn.__module__})")
        ANALYSES[aid] = Analysis(aid, title, fn, options, needs_panoptic, needs_flow, needs_video, fn.__module__,
                                 streams)
        return fn

    return deco


def discover() -> dict[str, Analysis]:
    """Import every module of the xinc.analysis package (pkgutil) so that its analyses register; return them.

    A module whose optional third-party dependency is missing is recorded in UNAVAILABLE instead.
    """
    import xinc.analysis as pkg

    for m in pkgutil.iter_modules(pkg.__path__):
        name = f"{pkg.__name__}.{m.name}"
        if m.name.startswith("_") or name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and e.name.split(".")[0] in ("xinc",):
                raise
            UNAVAILABLE[name] = f"needs the optional package {e.name!r}"
    return dict(sorted(ANALYSES.items()))


def get_analysis(aid: str) -> Analysis:
    """The registered analysis `aid` (after discovery), or a one-line error listing the known ids."""
    found = discover()
    if aid not in found:
        raise XincError(f"analysis {aid!r}: unknown or unavailable ; choose from {', '.join(found)}")
    return found[aid]


# ----------------------------------------------------------------------------- typed options


def make_options(aid: str, given: Any = None) -> Any:
    """The options dataclass instance of analysis `aid` from a dict (or an instance, returned validated).

    Unknown keys and values of the wrong type are one-line XincErrors; strings are converted where the
    field's type asks for a number or a boolean (so `--option a5.null=8` and TOML values both work).
    The dataclass may define `validate()` for checks across fields.
    """
    a = get_analysis(aid)
    cls = a.options
    if cls is None:
        if given:
            raise XincError(f"options of {aid}: {aid} takes no options ; remove {', '.join(map(str, given))}")
        return None
    if isinstance(given, cls):
        opts = given
    else:
        given = _renamed(aid, cls, dict(given or {}))
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in given if k not in names]
        if unknown:
            raise XincError(f"option {aid}.{unknown[0]}: unknown option of {aid} ; choose from {', '.join(names)}")
        opts = cls(**{k: coerce_option(f"{aid}.{k}", hints[k], v) for k, v in given.items()})
    check = getattr(opts, "validate", None)
    if callable(check):
        check()
    return opts


def _renamed(aid: str, cls: type, given: dict[str, Any]) -> dict[str, Any]:
    """Map option names the class lists in its `renamed` ClassVar to their new names, with a deprecation line."""
    for old, new in getattr(cls, "renamed", {}).items():
        if old in given:
            print(f"xinc: warning: option {aid}.{old} is deprecated and will be removed in the next release; "
                  f"use {aid}.{new}", file=sys.stderr)
            given.setdefault(new, given.pop(old))
    return given


def coerce_option(what: str, tp: Any, value: Any) -> Any:
    """`value` as type `tp` (bool, int, float, str, Literal, X | None), else a one-line XincError."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        if value not in args:
            raise XincError(f"option {what}={value!r}: not a choice ; choose from {', '.join(map(str, args))}")
        return value
    if args and type(None) in args:  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce_option(what, inner[0], value)
    try:
        return coerce_basic(tp, value)
    except (TypeError, ValueError):
        name = getattr(tp, "__name__", str(tp))
        raise XincError(f"option {what}={value!r}: expected {name} ; give a {name} value") from None


def parse_option_items(items: list[str] | tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """['a5.null=8', 'a6.method=finch'] -> {'a5': {'null': '8'}, 'a6': {'method': 'finch'}} (typed later)."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, eq, raw = item.partition("=")
        aid, dot, name = key.partition(".")
        if not eq or not dot or not aid or not name:
            raise XincError(f"--option {item!r}: expected AID.NAME=VALUE ; e.g. a5.null=8")
        out.setdefault(aid.strip().lower(), {})[name.strip()] = raw
    return out


# ----------------------------------------------------------------------------- running and saving


def run(ctx: AnalysisContext, ids: list[str] | None = None, options: dict[str, Any] | None = None, *,
        save: bool = True, on_start: Callable[[Analysis], Any] | None = None) -> dict[str, AnalysisResult]:
    """Run analyses `ids` (default: all registered) on ctx; with `save`, write their data under ctx.out.

    Options are checked for every id before any analysis starts. Saved: results.json[aid] (numbers and
    summary, merged into an existing results.json), data/<aid>.npz (arrays), tables/<aid>_<name>.csv.
    """
    found = discover()
    ids = list(found) if ids is None else [i.lower() for i in ids]
    options = dict(options or {})
    for aid in [*ids, *options]:
        get_analysis(aid)
    opts = {aid: make_options(aid, options.get(aid)) for aid in ids}
    results = {}
    for aid in ids:
        if on_start is not None:
            on_start(found[aid])
        res = found[aid].fn(ctx, opts[aid])
        if not isinstance(res, AnalysisResult):
            raise TypeError(f"analysis {aid} returned {type(res).__name__}, not an AnalysisResult")
        results[aid] = res
        if save and ctx.out is not None:
            save_result(ctx.out, aid, res)
    if save and ctx.out is not None and results:
        path = Path(ctx.out) / "results.json"
        current = read_json(path) if path.is_file() else {}
        current.update({aid: r.section(found[aid].title) for aid, r in results.items()})
        write_json(path, current)
    return results


def save_result(out: Path, aid: str, res: AnalysisResult) -> None:
    """Write a result's arrays to OUT/data/<aid>.npz and its tables to OUT/tables/<aid>_<name>.csv (atomic)."""
    out = Path(out)
    if res.arrays:
        (out / "data").mkdir(parents=True, exist_ok=True)
        arrays = {k: np.asarray(v) for k, v in res.arrays.items()}
        atomic_save(out / "data" / f"{aid}.npz", lambda p: np.savez_compressed(p, **arrays))
    for name, rows in res.tables.items():
        write_csv(out / "tables" / f"{aid}_{name}.csv", rows)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Rows (dicts; columns = the union of their keys, first-seen order) as a CSV file, atomically."""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=cols)
        writer.writeheader()
        writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(p: Path) -> None:
        with open(p, "w", newline="") as f:
            f.write(buf.getvalue())

    atomic_save(path, write)
    return path


def load_result(run_dir: str | Path, aid: str) -> AnalysisResult:
    """Read a saved result back (results.json[aid], data/<aid>.npz, tables/<aid>_*.csv): plots work from it."""
    run_dir = Path(run_dir)
    res = read_json(run_dir / "results.json")
    if aid not in res:
        raise XincError(f"{run_dir}: results.json has no {aid} section ; run `xinc analyze --analyses {aid}`")
    numbers = {k: v for k, v in res[aid].items() if k not in ("title", "summary", "figures")}
    arrays: dict[str, np.ndarray] = {}
    npz = run_dir / "data" / f"{aid}.npz"
    if npz.is_file():
        with np.load(npz, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    tables = {}
    for f in sorted((run_dir / "tables").glob(f"{aid}_*.csv")):
        with open(f, newline="") as fh:
            tables[f.stem[len(aid) + 1:]] = list(csv.DictReader(fh))
    return AnalysisResult(numbers, arrays, tables, list(res[aid].get("summary", [])))


def sub_arrays(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """{rest: array} of the arrays named '<prefix>/<rest>'."""
    p = prefix.rstrip("/") + "/"
    return {k[len(p):]: v for k, v in arrays.items() if k.startswith(p)}


class _InfoLog(Reducer):
    """Reducer that records the layer info and each frame's completeness residual (no map data)."""

    passive = True

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
                "height": int(i.height), "width": int(i.width), "notes": getattr(i, "notes", ""),
                "identity": getattr(i, "identity", ""), "gap_of": getattr(i, "gap_of", "")}


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


