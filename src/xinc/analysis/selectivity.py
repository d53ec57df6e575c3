"""A5 — what do neurons care about? (SPEC §4 A5)

Groupings of the pixels (xinc.analysis.grouping): panoptic segments (the unlabelled area is one more
group), k-means of RGB colours, k-means of Gabor responses, spatial cells. For neuron k with total
T_k = Σ_p A_k(p) and group g:
E = T_k·|g|/P, A = Σ_{p∈g} A_k(p), δ = |A − E|/E, V_k = unbiased variance of δ over the groups.
V_k is computed per frame and averaged over frames; figures show ln √V_k per grouping and layer.

Variant "paper" (paper canvas): strided-lattice cells (y mod n, x mod n), the 6 θ = 0 Gabor kernels on
the uint8 grey image with uint8 wrap-around, group counts as the original compared them directly.
Variant "linear" (exact linear canvas): contiguous n×n cells, all 24 Gabor kernels in float, k-means with
k = n² (the same group count as the cells), and a null model: for each grouping, `null` random
partitions with exactly its group sizes; score = ln √V − ln √V_null (0 = no more selective than
chance for those sizes). Both variants report the ordering of groupings by median with seeded
bootstrap confidence intervals (over neurons) and, per adjacent pair, the bootstrap probability
that the order holds.
One streamed pass per layer computes every grouping (and every null partition) of every frame.
Figures: xinc.report.plots.a5.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from xinc.analysis import grouping as gr
from xinc.analysis.registry import (
    DEPRECATED_MODES,
    AnalysisContext,
    AnalysisResult,
    each_variant_layer,
    register_analysis,
    stream_tensors,
)
from xinc.canvas.reduce import Reducer
from xinc.errors import XincError

AID = "a5"
ONE_HOT_MAX = 1 << 22  # P x G entries up to which group sums use a float64 one-hot matmul (32 MB)


def delta_variance(maps: torch.Tensor, labels: torch.Tensor, num_groups: int | None = None, *,
                   signed: bool = False) -> torch.Tensor:
    """V_k of (n, H, W) |maps| (or (n, P)) for one (H, W) grouping: unbiased variance of δ over groups.

    Neurons with T_k = 0 give NaN; empty groups are skipped. signed=True uses (A − E)/E instead of
    |A − E|/E (not the SPEC's statistic; only to explain the SPEC's quoted lattice constant).
    """
    a = maps.abs().reshape(maps.shape[0], -1).to(torch.float64)
    P = a.shape[1]
    if labels.is_floating_point():  # a precomputed (P, G) indicator matrix: one BLAS product
        onehot = labels.to(a.device, torch.float64)
        sums, size = a @ onehot, onehot.sum(0)
    else:  # a label map: scatter-add (no P x G matrix; for very large frames)
        lab = labels.reshape(-1).to(a.device, torch.int64)
        G = int(num_groups or int(lab.max()) + 1)
        sums = torch.zeros(a.shape[0], G, dtype=torch.float64, device=a.device).index_add_(1, lab, a)
        size = torch.bincount(lab, minlength=G).to(torch.float64)
    keep = size > 0
    T = a.sum(1, keepdim=True)
    E = T * size[None, keep] / P
    delta = (sums[:, keep] - E) / E
    delta = delta if signed else delta.abs()
    V = delta.var(dim=1, unbiased=True)
    return torch.where(T[:, 0] > 0, V, torch.full_like(V, float("nan")))


def one_hot(labels: torch.Tensor, num_groups: int | None = None) -> torch.Tensor:
    """(P, G) float64 indicator matrix of a label map (G = num_groups or max + 1)."""
    lab = labels.reshape(-1).to(torch.int64)
    G = int(num_groups or int(lab.max()) + 1)
    return torch.nn.functional.one_hot(lab, G).to(torch.float64)


class GroupingVariance(Reducer):
    """V_k per frame for many groupings at once: labels[frame] = {name: (H, W) compact labels}."""

    def __init__(self, labels: dict[int, dict[str, torch.Tensor]]) -> None:
        self.labels = labels
        self.V: dict[str, dict[int, torch.Tensor]] = {}

    def begin_frame(self, info, frame):
        super().begin_frame(info, frame)
        self._dev: dict[str, tuple[torch.Tensor, int]] = {}  # (P, G) one-hot or (P,) labels, on the maps' device
        self._V = {name: torch.full((info.num_neurons,), float("nan"), dtype=torch.float64)
                   for name in self.labels[frame]}

    def update(self, start, maps):
        for name, lab in self.labels[self.frame].items():
            if name not in self._dev:
                G = gr.num_groups(lab)
                small = lab.numel() * G <= ONE_HOT_MAX
                self._dev[name] = ((one_hot(lab, G) if small else lab.reshape(-1)).to(maps.device), G)
            sel, G = self._dev[name]
            self._V[name][start:start + maps.shape[0]] = delta_variance(maps, sel, G).cpu()

    def end_frame(self):
        for name, v in self._V.items():
            self.V.setdefault(name, {})[self.frame] = v

    def result(self):
        return self.V


def build_groupings(image, ids, variant: str, *, seed: int, paper_k: int = 10, paper_cells: int = 8,
                    linear_cells: int = 4, null: int = 4) -> dict[str, torch.Tensor]:
    """All label maps of one frame for one variant; 'linear' adds '<name>/null<r>' random partitions."""
    H, W = image.shape[-2:]
    out: dict[str, torch.Tensor] = {}
    if ids is not None:
        out["segments"] = gr.segment_labels(ids)[0]
    if DEPRECATED_MODES.get(variant, variant) == "paper":
        out["rgb_kmeans"] = gr.rgb_kmeans_labels(image, paper_k, seed)
        out["gabor_kmeans"] = gr.gabor_kmeans_labels(image, paper_k, seed, bank="paper")
        out["cells"] = gr.cell_labels(H, W, paper_cells, "lattice")
    else:
        k = linear_cells**2
        out["rgb_kmeans"] = gr.rgb_kmeans_labels(image, k, seed)
        out["gabor_kmeans"] = gr.gabor_kmeans_labels(image, k, seed, bank="full")
        out["cells"] = gr.cell_labels(H, W, linear_cells, "contiguous")
        for name in list(out):
            for r in range(null):
                s = seed + 7919 * (r + 1) + zlib.crc32(name.encode()) % 100_003
                out[f"{name}/null{r}"] = gr.random_partition_labels(out[name], s)
    return out


def log_sqrt(v: np.ndarray) -> np.ndarray:
    """ln √V (NaN for V <= 0 or NaN)."""
    v = np.asarray(v, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(v > 0, 0.5 * np.log(np.where(v > 0, v, 1.0)), np.nan)


def bootstrap_ordering(scores: dict[str, np.ndarray], *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Order groupings by median score (desc) with bootstrap CIs over neurons (paired) and pair confidences."""
    names = [n for n, s in scores.items() if np.isfinite(s).any()]
    if not names:
        return {"order": [], "medians": {}, "ci95": {}, "pair_confidence": [], "confidence": None}
    X = np.stack([scores[n] for n in names], 1)  # (K, G)
    X = X[np.isfinite(X).all(1)]
    if X.shape[0] == 0:
        return {"order": [], "medians": {}, "ci95": {}, "pair_confidence": [], "confidence": None}
    rng = np.random.default_rng(int(seed))
    idx = rng.integers(0, X.shape[0], size=(n_boot, X.shape[0]))
    step = max(1, int(2e7 // max(1, X.size)))  # bootstrap replicates per batch (bounded memory)
    med = np.concatenate([np.median(X[idx[b:b + step]], axis=1) for b in range(0, n_boot, step)], 0)  # (B, G)
    point = np.median(X, 0)
    order = list(np.argsort(-point))
    pairs = []
    for a, b in zip(order[:-1], order[1:]):
        pairs.append({"higher": names[a], "lower": names[b], "probability": float((med[:, a] > med[:, b]).mean())})
    return {"order": [names[i] for i in order],
            "medians": {n: float(point[i]) for i, n in enumerate(names)},
            "ci95": {n: [float(np.quantile(med[:, i], 0.025)), float(np.quantile(med[:, i], 0.975))]
                     for i, n in enumerate(names)},
            "pair_confidence": pairs, "confidence": min((p["probability"] for p in pairs), default=None),
            "neurons": int(X.shape[0]), "bootstrap": int(n_boot), "seed": int(seed)}


def summarise_variances(V: dict[str, dict[int, torch.Tensor]], variant: str) -> dict[str, np.ndarray]:
    """Per-grouping per-neuron scores: paper ln √V̄; linear ln √V̄ − ln √V̄_null (V̄ = mean over frames)."""
    def vbar(name):
        return np.nanmean(np.stack([v.numpy() for v in V[name].values()]), 0)

    base = [n for n in V if "/null" not in n]
    raw = {n: log_sqrt(vbar(n)) for n in base}
    if DEPRECATED_MODES.get(variant, variant) == "paper":
        return {"raw": raw}
    null = {}
    for n in base:
        reps = [m for m in V if m.startswith(f"{n}/null")]
        if reps:
            null[n] = log_sqrt(np.nanmean(np.stack([vbar(m) for m in reps]), 0))
    excess = {n: raw[n] - null[n] for n in base if n in null}
    return {"raw": raw, "null": null, "excess": excess}


def selectivity_from_canvases(maps: torch.Tensor, labels: dict[int, dict[str, torch.Tensor]],
                              chunk: int | None = None) -> dict[str, dict[int, torch.Tensor]]:
    """V_k per grouping and frame of given canvases (T, K, H, W) (Python API / tests)."""
    red = GroupingVariance(labels)
    stream_tensors(maps, [red], frames=sorted(labels), chunk=chunk)
    return red.result()


@dataclass
class SelectivityOptions:
    """A5 grouping sizes, null partitions and bootstrap replicates."""

    renamed: ClassVar[dict[str, str]] = {"faithful_k": "paper_k", "faithful_cells": "paper_cells",
                                         "corrected_cells": "linear_cells"}
    paper_k: int = 10  # k of the paper variant's RGB and Gabor k-means
    paper_cells: int = 8  # n of the paper variant's strided n x n lattice cells
    linear_cells: int = 4  # n of the linear variant's contiguous n x n cells (k-means use k = n²)
    null: int = 4  # random partitions of the same group sizes per grouping (linear variant)
    bootstrap: int = 1000  # bootstrap replicates of the ordering confidence

    def validate(self) -> None:
        if min(self.paper_k, self.paper_cells, self.linear_cells) < 1 or self.null < 0 or self.bootstrap < 1:
            raise XincError(f"a5 options {self}: out of range ; need k and cells >= 1, null >= 0, bootstrap >= 1")


def _variant_labels(ctx: AnalysisContext, variant: str, lab: dict, opts: SelectivityOptions) -> dict:
    """{frame: {grouping: labels}} of one variant; with segments, only groupings present in every frame."""
    labels = {f: build_groupings(ctx.images[i], lab[f][0] if f in lab else None, variant, seed=ctx.seed,
                                 paper_k=opts.paper_k, paper_cells=opts.paper_cells,
                                 linear_cells=opts.linear_cells, null=opts.null)
              for i, f in enumerate(ctx.frames)}
    if lab:
        common = set.intersection(*(set(v) for v in labels.values()))
        labels = {f: {n: v[n] for n in v if n in common} for f, v in labels.items()}
    return labels


def _layer(ctx, variant, cmode, layer, labels, opts: SelectivityOptions) -> dict[str, Any]:
    """One layer: per-neuron scores per grouping, bootstrap ordering, numbers, arrays and neuron rows."""
    red = GroupingVariance(labels)
    ctx.stream(layer, [red], canvas_mode=cmode)
    sc = summarise_variances(red.result(), variant)
    key = "excess" if "excess" in sc else "raw"
    o = bootstrap_ordering(sc[key], n_boot=opts.bootstrap, seed=ctx.seed)
    section = {"statistic": "ln sqrt(V) - ln sqrt(V_null)" if key == "excess" else "ln sqrt(V)",
               "median_ln_sqrt_V": {n: _nanmed(v) for n, v in sc["raw"].items()},
               **({"median_ln_sqrt_V_null": {n: _nanmed(v) for n, v in sc["null"].items()}} if "null" in sc else {}),
               "ordering": o}
    cols = {n: v for n, v in sc["raw"].items()}
    cols.update({f"{n}_null": v for n, v in sc.get("null", {}).items()})
    mat = np.stack(list(cols.values()), 1)
    rows = [{"variant": variant, "layer": layer, "neuron": k, **dict(zip(cols, map(_num, r)))}
            for k, r in enumerate(mat.tolist())]
    arrays = {f"{variant}/{layer}/{part}/{n}": v.astype(np.float32) for part in ("raw", "null")
              for n, v in sc.get(part, {}).items()}
    conf = ", ".join(f"P({p['higher']}>{p['lower']})={p['probability']:.2f}" for p in o["pair_confidence"])
    line = (f"{variant} {layer}: ordering by median {'excess over null' if key == 'excess' else 'ln √V'}: "
            f"{' > '.join(o['order'])} ({conf})")
    return {"section": section, "key": key, "rows": rows, "arrays": arrays, "line": line}


def _order_rows(variant, cmode, layer, r, group_counts) -> list[dict[str, Any]]:
    o = r["section"]["ordering"]
    return [{"variant": variant, "canvas": cmode, "layer": layer, "grouping": n,
             "groups": "/".join(map(str, group_counts.get(n, []))), "median": o["medians"].get(n),
             "ci_lo": o["ci95"].get(n, [None])[0], "ci_hi": o["ci95"].get(n, [None, None])[1],
             "rank": o["order"].index(n) + 1 if n in o["order"] else None}
            for n in r["section"]["median_ln_sqrt_V" if r["key"] == "raw" else "median_ln_sqrt_V_null"]]


@register_analysis(AID, "What do neurons care about", options=SelectivityOptions)
def run(ctx: AnalysisContext, opts: SelectivityOptions) -> AnalysisResult:
    """δ-variance per grouping and layer, paper and linear variants, with ordering and bootstrap confidence."""
    from xinc.analysis.objects import labelled_frames

    lab = labelled_frames(ctx)
    labels = {v: _variant_labels(ctx, v, lab, opts) for v, _ in ctx.variants()}
    grid = each_variant_layer(ctx, lambda v, cm, la: _layer(ctx, v, cm, la, labels[v], opts))
    res = AnalysisResult(numbers={"options": dataclasses.asdict(opts), "canvas_modes": dict(ctx.variants()),
                                  "segments": "used" if lab else "skipped (no panoptic labels for the analysed "
                                                                 "frames)"})
    order_rows = []
    for v, layers in grid.items():
        group_counts = {n: sorted({gr.num_groups(x[n]) for x in labels[v].values()})
                        for n in next(iter(labels[v].values())) if "/null" not in n}
        res.numbers[v] = {**{la: r["section"] for la, r in layers.items()}, "group_counts": group_counts}
        res.tables[f"neurons_{v}"] = [row for r in layers.values() for row in r["rows"]]
        for la, r in layers.items():
            order_rows += _order_rows(v, dict(ctx.variants())[v], la, r, group_counts)
            res.arrays.update(r["arrays"])
            res.summary.append(r["line"])
    res.tables["ordering"] = order_rows
    return res


def _nanmed(v: np.ndarray) -> float | None:
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else None


def _num(x):
    return None if x is None or not np.isfinite(x) else float(x)
