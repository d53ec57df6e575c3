"""A3 — how do neurons contribute to objects over time? (SPEC §4 A3)

For every panoptic segment g of every analysed frame: the mean |C_k| of each neuron inside g
(one streamed pass per layer, per-frame group sums by index_add). Each neuron is then min-max
normalised over all (segment, frame) cells of the clip, and a seeded sample of neurons is plotted
per category across frames.

Variant "paper": its "other" group, which was the union of all labelled segments (the cell "other"
= mean |C| over every labelled pixel), is reproduced as such. Variant "linear": an "unlabelled" group that
is truly the unlabelled (void, id 0) area, and things vs stuff summaries per layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from xinc.analysis.registry import (
    DEPRECATED_MODES,
    AnalysisContext,
    AnalysisResult,
    each_variant_layer,
    register_analysis,
    stream_tensors,
)
from xinc.canvas.reduce import GroupSums
from xinc.errors import XincError

AID = "a3"
UNLABELLED = "unlabelled"
OTHER = "other (union of segments)"


@dataclass
class Cell:
    """One (group, frame) cell: a segment, the unlabelled area, or the original's union 'other'."""

    frame: int
    segment_id: int
    category_id: int
    name: str
    isthing: bool | None
    area: int
    kind: str  # "segment" | "unlabelled" | "other"


def frame_groups(ids, segments, frame: int) -> tuple[torch.Tensor, list[Cell]]:
    """Compact labels of one frame's segment-id map and the cells (id 0 -> unlabelled); areas from the map."""
    ids_t = torch.as_tensor(np.asarray(ids)).to(torch.int64)
    values, inverse, counts = torch.unique(ids_t, return_inverse=True, return_counts=True)
    info = {int(s.id): s for s in (segments or [])}
    cells = []
    for v, c in zip(values.tolist(), counts.tolist()):
        if v == 0:
            cells.append(Cell(frame, 0, -1, UNLABELLED, None, c, "unlabelled"))
        else:
            s = info.get(v)
            cells.append(Cell(frame, v, int(s.category_id) if s else -1, s.name if s else f"segment {v}",
                              bool(s.isthing) if s else None, c, "segment"))
    return inverse.reshape(ids_t.shape), cells


def segment_means(stream, groups: dict[int, tuple[torch.Tensor, list[Cell]]]) -> tuple[np.ndarray, list[Cell]]:
    """Mean |C_k| in every cell of every frame -> (K, n_cells) plus the cells; the union 'other' appended.

    `stream(reducers)` drives reducers over the frames in `groups` (one pass).
    """
    G = max(len(c) for _, c in groups.values())
    red = GroupSums({f: lab for f, (lab, _) in groups.items()}, G)
    stream([red])
    sums = red.result()
    cols, cells = [], []
    for f in sorted(groups):
        lab, fc = groups[f]
        s = sums[f].to(torch.float64).numpy()[:, :len(fc)]
        area = np.array([c.area for c in fc], dtype=np.float64)
        cols.append(s / area[None])
        cells += fc
        seg = np.array([c.kind == "segment" for c in fc])
        if seg.any():  # the original's "other": every labelled pixel pooled
            cols.append((s[:, seg].sum(1) / area[seg].sum())[:, None])
            cells.append(Cell(f, -1, -1, OTHER, None, int(area[seg].sum()), "other"))
    return np.concatenate(cols, 1), cells


def normalise_per_neuron(values: np.ndarray) -> np.ndarray:
    """Min-max normalise each row (neuron) over its cells; constant rows become 0."""
    lo = values.min(1, keepdims=True)
    span = values.max(1, keepdims=True) - lo
    return np.where(span > 0, (values - lo) / np.where(span > 0, span, 1), 0.0)


def variant_cells(cells: list[Cell], variant: str) -> np.ndarray:
    """Mask of the cells each variant uses: paper = segments + 'other'; linear = segments + unlabelled."""
    keep = {"paper": ("segment", "other"), "linear": ("segment", "unlabelled")}[DEPRECATED_MODES.get(variant, variant)]
    return np.array([c.kind in keep for c in cells])


def things_stuff(norm: np.ndarray, cells: list[Cell]) -> dict[str, Any]:
    """Per-neuron mean normalised value over thing, stuff and unlabelled cells, and layer summaries."""
    kinds = {"things": [c.kind == "segment" and c.isthing is True for c in cells],
             "stuff": [c.kind == "segment" and c.isthing is False for c in cells],
             "unlabelled": [c.kind == "unlabelled" for c in cells]}
    per = {k: norm[:, np.array(m)].mean(1) if any(m) else None for k, m in kinds.items()}
    out: dict[str, Any] = {f"mean_{k}": (float(v.mean()) if v is not None else None) for k, v in per.items()}
    out["cells"] = {k: int(sum(m)) for k, m in kinds.items()}
    if per["things"] is not None and per["stuff"] is not None:
        out["fraction_neurons_prefer_things"] = float((per["things"] > per["stuff"]).mean())
    return {"summary": out, "per_neuron": per}


def sample_neurons(values: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Seeded sample of n neurons among those with any contribution (sorted indices)."""
    from xinc.canvas.sampling import sample_neurons as shared_sampler

    return np.asarray(shared_sampler(values.shape[0], n, seed, alive=values.max(1) > 0), dtype=np.int64)


def objects_from_canvases(maps: torch.Tensor, ids: list, segments: list, frames: list[int] | None = None,
                          chunk: int | None = None) -> tuple[np.ndarray, list[Cell]]:
    """Mean |C| per (neuron, cell) of given canvases (T, K, H, W) with per-frame id maps (Python API / tests)."""
    frames = list(range(maps.shape[0])) if frames is None else list(frames)
    groups = {f: frame_groups(ids[i], segments[i], f) for i, f in enumerate(frames)}
    return segment_means(lambda reds: stream_tensors(maps, reds, frames=frames, chunk=chunk), groups)


def labelled_frames(ctx: AnalysisContext) -> dict[int, tuple[Any, list]]:
    """{model frame: (ids, segments)} for the analysed frames that carry panoptic labels."""
    clip = ctx.panoptic
    if clip is None:
        return {}
    of = ctx.label_frame_of or {}
    annotated = set(getattr(clip, "annotated", []) or [])
    out = {}
    for f in ctx.frames:
        j = int(of.get(f, of.get(str(f), f)))
        if annotated and j not in annotated:
            continue
        try:
            out[f] = (clip.ids[j], clip.segments[j])
        except (KeyError, IndexError):
            continue
    return out


@dataclass
class ObjectsOptions:
    """A3: how many neurons per layer are sampled (seeded) for the per-neuron plots and table."""

    sample_neurons: int = 6

    def validate(self) -> None:
        if self.sample_neurons < 0:
            raise XincError(f"a3 option sample_neurons={self.sample_neurons}: negative ; give 0 or more")


def _layer(ctx: AnalysisContext, variant: str, cmode: str, layer: str, groups, frames, n_show: int):
    """One layer of one variant: normalised cell means, sampled neurons, things/stuff, table rows."""
    values, cells = segment_means(
        lambda reds: ctx.stream(layer, reds, canvas_mode=cmode, frames=frames), groups)
    mask = variant_cells(cells, variant)
    norm = np.zeros_like(values)
    norm[:, mask] = normalise_per_neuron(values[:, mask])
    sample = sample_neurons(values[:, mask], n_show, ctx.seed)
    kept = [(i, c) for i, c in enumerate(cells) if mask[i]]
    ts = things_stuff(norm[:, mask], [c for _, c in kept])
    cats: dict[str, list[int]] = {}
    for i, c in kept:
        cats.setdefault(c.name, []).append(i)
    cat_rows = [{"variant": variant, "canvas": cmode, "layer": layer, "category": name, "kind": cells[idx[0]].kind,
                 "isthing": cells[idx[0]].isthing, "cells": len(idx), "mean_normalised": float(norm[:, idx].mean()),
                 "mean_abs": float(values[:, idx].mean())} for name, idx in cats.items()]
    cell_rows = [{"variant": variant, "layer": layer, "neuron": int(k), "frame": c.frame, "segment_id": c.segment_id,
                  "category": c.name, "isthing": c.isthing, "kind": c.kind, "area": c.area,
                  "mean_abs": float(values[k, i]), "normalised": float(norm[k, i])} for k in sample for i, c in kept]
    cat_means = {r["category"]: r["mean_normalised"] for r in cat_rows}
    top = max(cat_means, key=cat_means.get) if cat_means else None
    section = {"num_neurons": int(values.shape[0]), "num_cells": int(mask.sum()), "sampled_neurons": sample.tolist(),
               **ts["summary"], "top_category": top, "category_means": cat_means}
    arrays = {f"{variant}/{layer}/{k}": v for k, v in ts["per_neuron"].items() if v is not None}
    return {"section": section, "arrays": arrays, "categories": cat_rows, "cells": cell_rows}


def _line(variant: str, layer: str, sec: dict[str, Any]) -> str:
    line = f"{variant} {layer}: mean normalised |C| things {_f(sec['mean_things'])}, stuff {_f(sec['mean_stuff'])}"
    if variant == "linear":
        line += f", unlabelled {_f(sec['mean_unlabelled'])}"
    if "fraction_neurons_prefer_things" in sec:
        line += f"; {100 * sec['fraction_neurons_prefer_things']:.0f}% of neurons favour things"
    return line + (f"; highest category: {sec['top_category']}" if sec["top_category"] else "")


@register_analysis(AID, "Contributions to objects over time", options=ObjectsOptions, needs_panoptic=True)
def run(ctx: AnalysisContext, opts: ObjectsOptions) -> AnalysisResult:
    """Per-neuron mean |C| per segment and frame, normalised per neuron; sampled neurons; things vs stuff."""
    lab = labelled_frames(ctx)
    if not lab:
        raise XincError("a3: none of the analysed frames has panoptic labels ; give --dataset/--root/--video "
                        "and annotated --frames")
    frames = sorted(lab)
    groups = {f: frame_groups(ids, segs, f) for f, (ids, segs) in lab.items()}
    grid = each_variant_layer(ctx, lambda v, cm, la: _layer(ctx, v, cm, la, groups, frames, opts.sample_neurons))
    res = AnalysisResult(numbers={"frames": frames, "canvas_modes": dict(ctx.variants()),
                                  "normalisation": "min-max per neuron over the variant's cells of the clip",
                                  "sampling": {"seed": ctx.seed, "neurons_per_layer": opts.sample_neurons}})
    if len(frames) == 1:  # an image model (FFN) or one annotated frame: nothing happens over time
        res.title = "Contributions to objects in one frame"
    res.tables = {"categories": [], "sampled_cells": []}
    for v, layers in grid.items():
        res.numbers[v] = {la: r["section"] for la, r in layers.items()}
        for la, r in layers.items():
            res.arrays.update(r["arrays"])
            res.tables["categories"] += r["categories"]
            res.tables["sampled_cells"] += r["cells"]
            res.summary.append(_line(v, la, r["section"]))
    return res


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"
