"""A3 — how do neurons contribute to objects over time? (SPEC §4 A3)

For every panoptic segment g of every analysed frame: the mean |C_k| of each neuron inside g
(one streamed pass per layer, per-frame group sums by index_add). Each neuron is then min-max
normalised over all (segment, frame) cells of the clip, and a seeded sample of neurons is plotted
per category across frames.

Paper-faithful: its "other" group, which was the union of all labelled segments (the cell "other"
= mean |C| over every labelled pixel), is reproduced as such. Corrected: an "unlabelled" group that
is truly the unlabelled (void, id 0) area, and things vs stuff summaries per layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from xinc.analysis.registry import AnalysisContext, register_analysis, stream_tensors, variants
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
    """Mask of the cells each variant uses: faithful = segments + 'other'; corrected = segments + unlabelled."""
    keep = {"faithful": ("segment", "other"), "corrected": ("segment", "unlabelled")}[variant]
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
    of = ctx.options.get("label_frame_of") or {}
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


def _figure(ctx, variant, cmode, layer_data, n_show):
    from xinc.report.figures import category_legend, category_palette, new_figure

    layers = list(layer_data)
    names = [c.name for d in layer_data.values() for c, m in zip(d["cells"], d["mask"]) if m
             and c.kind == "segment"]
    fixed = {UNLABELLED: (0.55, 0.55, 0.55), OTHER: (0.0, 0.0, 0.0)}
    palette = category_palette(sorted(set(names)) + [UNLABELLED, OTHER], fixed)
    used = set()
    fig, axes = new_figure(len(layers), n_show, panel=(2.6, 1.9),
                           title=f"A3 normalised mean |C| per segment over frames — {variant} ({cmode} canvas)")
    for r, layer in enumerate(layers):
        d = layer_data[layer]
        cells = [c for c, m in zip(d["cells"], d["mask"]) if m]
        frames = sorted({c.frame for c in cells})
        for j in range(n_show):
            ax = axes[r, j]
            if j >= len(d["sample"]):
                ax.axis("off")
                continue
            k = d["sample"][j]
            vals = d["norm"][k]
            tracks: dict[tuple, list] = {}
            for c, v in zip(cells, vals):
                tracks.setdefault((c.kind, c.segment_id, c.name), []).append((c.frame, v))
            for (kind, _, name), pts in tracks.items():
                pts.sort()
                x, y = zip(*pts)
                style = {"other": ":", "unlabelled": "--"}.get(kind, "-")
                ax.plot(x, y, style, marker="o", ms=2.5, lw=1, color=palette[name], alpha=0.85)
                used.add(name)
            ax.set_ylim(-0.05, 1.05)
            ax.set_title(f"{layer}: neuron {k}")
            if len(frames) > 1:
                ax.set_xticks(frames)
            ax.set_xlabel("frame")
            if j == 0:
                ax.set_ylabel("normalised mean |C|")
    shown = {n: c for n, c in palette.items() if n in used}
    category_legend(fig, shown, title="category", loc="upper left", bbox_to_anchor=(1.0, 0.95), max_cols=3,
                    styles={UNLABELLED: "--", OTHER: ":"})
    fig.tight_layout()
    return fig


def _ts_figure(ctx, variant, cmode, per_layer):
    from xinc.report.figures import new_figure

    fig, axes = new_figure(1, 1, panel=(max(3.5, 1.6 * len(per_layer)), 2.8),
                           title=f"A3 things vs stuff vs unlabelled — {variant} ({cmode} canvas)")
    ax = axes[0, 0]
    data, labels, colors = [], [], []
    for layer, per in per_layer.items():
        for i, kind in enumerate(("things", "stuff", "unlabelled")):
            if per.get(kind) is not None:
                data.append(per[kind])
                labels.append(f"{layer}\n{kind}")
                colors.append(("C3", "C2", "0.6")[i])
    if data:
        bp = ax.boxplot(data, patch_artist=True, showfliers=False)
        for patch, c in zip(bp["boxes"], colors):
            patch.set_facecolor(c)
        ax.set_xticks(range(1, len(labels) + 1))
        ax.set_xticklabels(labels, fontsize=6)
    ax.set_ylabel("per-neuron mean normalised |C|")
    fig.tight_layout()
    return fig


@register_analysis(AID, "Contributions to objects over time", needs_panoptic=True)
def run(ctx: AnalysisContext) -> dict[str, Any]:
    """Per-neuron mean |C| per segment and frame, normalised per neuron; sampled plots; things vs stuff."""
    lab = labelled_frames(ctx)
    if not lab:
        raise XincError("a3: none of the analysed frames has panoptic labels; give --dataset/--root/--video "
                        "and annotated --frames")
    frames = sorted(lab)
    n_show = int(ctx.option(AID, "sample_neurons", ctx.options.get("sample_neurons") or 6))
    groups = {f: frame_groups(ids, segs, f) for f, (ids, segs) in lab.items()}
    out: dict[str, Any] = {"frames": frames, "figures": [], "summary": [],
                           "normalisation": "min-max per neuron over the variant's cells of the clip",
                           "sampling": {"seed": ctx.seed, "neurons_per_layer": n_show}}
    cat_rows, cell_rows = [], []
    for variant, cmode in variants(ctx.mode):
        layer_data, per_layer, section = {}, {}, {}
        for layer in ctx.layers:
            values, cells = segment_means(
                lambda reds, la=layer, cm=cmode: ctx.stream(la, reds, canvas_mode=cm, frames=frames), groups)
            mask = variant_cells(cells, variant)
            norm = np.zeros_like(values)
            norm[:, mask] = normalise_per_neuron(values[:, mask])
            sample = sample_neurons(values[:, mask], n_show, ctx.seed)
            ts = things_stuff(norm[:, mask], [c for c, m in zip(cells, mask) if m])
            per_layer[layer] = ts["per_neuron"]
            layer_data[layer] = {"cells": cells, "mask": mask, "norm": norm, "sample": sample.tolist()}
            kept = [(i, c) for i, c in enumerate(cells) if mask[i]]
            cats: dict[str, list[int]] = {}
            for i, c in kept:
                cats.setdefault(c.name, []).append(i)
            cat_means = {}
            for name, idx in cats.items():
                c0 = cells[idx[0]]
                mean = float(norm[:, idx].mean())
                cat_means[name] = mean
                cat_rows.append({"variant": variant, "canvas": cmode, "layer": layer, "category": name,
                                 "kind": c0.kind, "isthing": c0.isthing, "cells": len(idx),
                                 "mean_normalised": mean, "mean_abs": float(values[:, idx].mean())})
            for k in sample:
                for i, c in kept:
                    cell_rows.append({"variant": variant, "layer": layer, "neuron": int(k), "frame": c.frame,
                                      "segment_id": c.segment_id, "category": c.name, "isthing": c.isthing,
                                      "kind": c.kind, "area": c.area, "mean_abs": float(values[k, i]),
                                      "normalised": float(norm[k, i])})
            top = max(cat_means, key=cat_means.get) if cat_means else None
            section[layer] = {"num_neurons": int(values.shape[0]), "num_cells": int(mask.sum()),
                              "sampled_neurons": sample.tolist(), **ts["summary"], "top_category": top,
                              "category_means": cat_means}
            s = ts["summary"]
            line = f"{variant} {layer}: mean normalised |C| things {_f(s['mean_things'])}, stuff " \
                   f"{_f(s['mean_stuff'])}"
            if variant == "corrected":
                line += f", unlabelled {_f(s['mean_unlabelled'])}"
            if "fraction_neurons_prefer_things" in s:
                line += f"; {100 * s['fraction_neurons_prefer_things']:.0f}% of neurons favour things"
            out["summary"].append(line + (f"; highest category: {top}" if top else ""))
        path = ctx.figure(AID, f"segments_over_time_{variant}", _figure(ctx, variant, cmode, layer_data, n_show))
        out["figures"].append({"path": ctx.rel(path), "caption": f"Seeded sample of {n_show} neurons per layer: "
                               f"normalised mean |C| inside each segment across frames, coloured by category "
                               f"({variant}; dashed = unlabelled area, dotted = the original's union 'other')."})
        path = ctx.figure(AID, f"things_stuff_{variant}", _ts_figure(ctx, variant, cmode, per_layer))
        out["figures"].append({"path": ctx.rel(path), "caption": f"Per-neuron mean normalised |C| over thing, stuff "
                                                                   f"and unlabelled cells ({variant})."})
        out[variant] = section
    ctx.table(AID, "categories", cat_rows)
    ctx.table(AID, "sampled_cells", cell_rows)
    return out


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"
