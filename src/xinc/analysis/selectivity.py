"""A5 — what do neurons care about? (SPEC §4 A5)

Groupings of the pixels (xinc.analysis.grouping): panoptic segments (the unlabelled area is one more
group), k-means of RGB colours, k-means of Gabor responses, spatial cells. For neuron k with total
T_k = Σ_p A_k(p) and group g:
E = T_k·|g|/P, A = Σ_{p∈g} A_k(p), δ = |A − E|/E, V_k = unbiased variance of δ over the groups.
V_k is computed per frame and averaged over frames; figures show ln √V_k per grouping and layer.

Paper-faithful (paper canvas): strided-lattice cells (y mod n, x mod n), the 6 θ = 0 Gabor kernels on
the uint8 grey image with uint8 wrap-around, group counts as the original compared them directly.
Corrected (exact linear canvas): contiguous n×n cells, all 24 Gabor kernels in float, k-means with
k = n² (the same group count as the cells), and a null model: for each grouping, `null` random
partitions with exactly its group sizes; score = ln √V − ln √V_null (0 = no more selective than
chance for those sizes). Both variants report the ordering of groupings by median with seeded
bootstrap confidence intervals (over neurons) and, per adjacent pair, the bootstrap probability
that the order holds.
One streamed pass per layer computes every grouping (and every null partition) of every frame.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import torch

from xinc.analysis import grouping as gr
from xinc.analysis.registry import AnalysisContext, register_analysis, stream_tensors, variants
from xinc.canvas.reduce import Reducer

AID = "a5"
ONE_HOT_MAX = 1 << 22  # P x G entries up to which group sums use a float64 one-hot matmul (32 MB)
DEFAULTS = {"faithful_k": 10, "faithful_cells": 8, "corrected_cells": 4, "null": 4, "bootstrap": 1000}


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


def build_groupings(image, ids, variant: str, *, seed: int, faithful_k: int = 10, faithful_cells: int = 8,
                    corrected_cells: int = 4, null: int = 4) -> dict[str, torch.Tensor]:
    """All label maps of one frame for one variant; corrected adds '<name>/null<r>' random partitions."""
    H, W = image.shape[-2:]
    out: dict[str, torch.Tensor] = {}
    if ids is not None:
        out["segments"] = gr.segment_labels(ids)[0]
    if variant == "faithful":
        out["rgb_kmeans"] = gr.rgb_kmeans_labels(image, faithful_k, seed)
        out["gabor_kmeans"] = gr.gabor_kmeans_labels(image, faithful_k, seed, bank="faithful")
        out["cells"] = gr.cell_labels(H, W, faithful_cells, "lattice")
    else:
        k = corrected_cells**2
        out["rgb_kmeans"] = gr.rgb_kmeans_labels(image, k, seed)
        out["gabor_kmeans"] = gr.gabor_kmeans_labels(image, k, seed, bank="full")
        out["cells"] = gr.cell_labels(H, W, corrected_cells, "contiguous")
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
    """Per-grouping per-neuron scores: faithful ln √V̄; corrected ln √V̄ − ln √V̄_null (V̄ = mean over frames)."""
    def vbar(name):
        return np.nanmean(np.stack([v.numpy() for v in V[name].values()]), 0)

    base = [n for n in V if "/null" not in n]
    raw = {n: log_sqrt(vbar(n)) for n in base}
    if variant == "faithful":
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


def _boxplot(ctx, variant, cmode, per_layer):
    from xinc.report.figures import new_figure

    layers = list(per_layer)
    fig, axes = new_figure(1, len(layers), panel=(3.3, 2.8), sharey=True,
                           title=f"A5 ln √V per grouping — {variant} ({cmode} canvas)")
    for ax, layer in zip(axes[0], layers):
        sc = per_layer[layer]
        names = list(sc["raw"])
        data = [sc["raw"][n][np.isfinite(sc["raw"][n])] for n in names]
        pos = np.arange(1, len(names) + 1, dtype=float)
        if "null" in sc:
            b = ax.boxplot(data, positions=pos - 0.18, widths=0.32, showfliers=False, patch_artist=True)
            nd = [sc["null"][n][np.isfinite(sc["null"][n])] for n in names]
            bn = ax.boxplot(nd, positions=pos + 0.18, widths=0.32, showfliers=False, patch_artist=True)
            for p in bn["boxes"]:
                p.set_facecolor("0.85")
                p.set_hatch("//")
            ax.legend([b["boxes"][0], bn["boxes"][0]], ["grouping", "null (same sizes)"], frameon=False,
                      loc="best")
        else:
            b = ax.boxplot(data, positions=pos, widths=0.5, showfliers=False, patch_artist=True)
        for p in b["boxes"]:
            p.set_facecolor("C0")
            p.set_alpha(0.7)
        ax.set_xticks(pos)
        ax.set_xticklabels([n.replace("_", " ") for n in names], rotation=30, fontsize=7)
        ax.set_title(layer)
        ax.set_ylabel("ln √V_k")
    fig.tight_layout()
    return fig


def _excess_plot(ctx, per_layer_order):
    from xinc.report.figures import new_figure

    layers = list(per_layer_order)
    fig, axes = new_figure(1, len(layers), panel=(3.0, 2.6), sharey=True,
                           title="A5 corrected: median ln √V − ln √V_null (95% bootstrap CI)")
    for ax, layer in zip(axes[0], layers):
        o = per_layer_order[layer]
        names = list(o["medians"])
        m = np.array([o["medians"][n] for n in names])
        lo = m - np.array([o["ci95"][n][0] for n in names])
        hi = np.array([o["ci95"][n][1] for n in names]) - m
        ax.bar(range(len(names)), m, yerr=[lo, hi], color="C0", alpha=0.75, capsize=3)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([n.replace("_", " ") for n in names], rotation=30, fontsize=7)
        ax.set_title(f"{layer} (order conf. {_p(o['confidence'])})")
        ax.set_ylabel("excess selectivity")
    fig.tight_layout()
    return fig


def _p(v):
    return "n/a" if v is None else f"{v:.2f}"


@register_analysis(AID, "What do neurons care about")
def run(ctx: AnalysisContext) -> dict[str, Any]:
    """δ-variance per grouping and layer, faithful and corrected, with ordering and bootstrap confidence."""
    from xinc.analysis.objects import labelled_frames

    opts = {k: int(ctx.option(AID, k, v)) for k, v in DEFAULTS.items()}
    lab = labelled_frames(ctx)
    out: dict[str, Any] = {"options": opts, "figures": [], "summary": [],
                           "segments": "used" if lab else "skipped (no panoptic labels for the analysed frames)"}
    rows, order_rows = [], []
    for variant, cmode in variants(ctx.mode):
        labels = {}
        for i, f in enumerate(ctx.frames):
            ids = lab[f][0] if f in lab else None
            labels[f] = build_groupings(ctx.images[i], ids, variant, seed=ctx.seed, faithful_k=opts["faithful_k"],
                                        faithful_cells=opts["faithful_cells"],
                                        corrected_cells=opts["corrected_cells"], null=opts["null"])
        if lab:  # segments only where labelled: keep groupings present in every frame
            common = set.intersection(*(set(v) for v in labels.values()))
            labels = {f: {n: v[n] for n in v if n in common} for f, v in labels.items()}
        group_counts = {n: sorted({gr.num_groups(v[n]) for v in labels.values()}) for n in
                        next(iter(labels.values())) if "/null" not in n}
        per_layer, orders, section = {}, {}, {}
        for layer in ctx.layers:
            red = GroupingVariance(labels)
            ctx.stream(layer, [red], canvas_mode=cmode)
            sc = summarise_variances(red.result(), variant)
            per_layer[layer] = sc
            key = "excess" if variant == "corrected" else "raw"
            orders[layer] = bootstrap_ordering(sc[key], n_boot=opts["bootstrap"], seed=ctx.seed)
            o = orders[layer]
            section[layer] = {"statistic": "ln sqrt(V) - ln sqrt(V_null)" if key == "excess" else "ln sqrt(V)",
                              "median_ln_sqrt_V": {n: _nanmed(v) for n, v in sc["raw"].items()},
                              **({"median_ln_sqrt_V_null": {n: _nanmed(v) for n, v in sc["null"].items()}}
                                 if "null" in sc else {}),
                              "ordering": o}
            for n in sc[key]:
                order_rows.append({"variant": variant, "canvas": cmode, "layer": layer, "grouping": n,
                                   "groups": "/".join(map(str, group_counts.get(n, []))),
                                   "median": o["medians"].get(n), "ci_lo": o["ci95"].get(n, [None])[0],
                                   "ci_hi": o["ci95"].get(n, [None, None])[1],
                                   "rank": o["order"].index(n) + 1 if n in o["order"] else None})
            K = len(next(iter(sc["raw"].values())))
            names = list(sc["raw"])
            cols = {n: sc["raw"][n] for n in names}
            if "null" in sc:
                cols.update({f"{n}_null": sc["null"][n] for n in sc["null"]})
            mat = np.stack(list(cols.values()), 1)
            rows += [{"variant": variant, "layer": layer, "neuron": k, **dict(zip(cols, map(_num, r)))}
                     for k, r in zip(range(K), mat.tolist())]
            ordering = " > ".join(o["order"])
            conf = ", ".join(f"P({p['higher']}>{p['lower']})={p['probability']:.2f}" for p in o["pair_confidence"])
            what = "excess over null" if key == "excess" else "ln √V"
            out["summary"].append(f"{variant} {layer}: ordering by median {what}: {ordering} ({conf})")
        path = ctx.figure(AID, f"boxplots_{variant}", _boxplot(ctx, variant, cmode, per_layer))
        out["figures"].append({"path": ctx.rel(path), "caption": f"ln √V_k per grouping and layer ({variant}, "
                               f"{cmode} canvas)" + ("; hatched = random partitions of the same sizes."
                                                     if variant == "corrected" else ".")})
        if variant == "corrected":
            path = ctx.figure(AID, "excess_over_null", _excess_plot(ctx, orders))
            out["figures"].append({"path": ctx.rel(path), "caption": "Median selectivity in excess of the null "
                                   "model, with 95% bootstrap intervals over neurons, per grouping and layer."})
        section["group_counts"] = group_counts
        out[variant] = section
        ctx.table(AID, f"neurons_{variant}", rows)
        rows = []
    ctx.table(AID, "ordering", order_rows)
    return out


def _nanmed(v: np.ndarray) -> float | None:
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else None


def _num(x):
    return None if x is None or not np.isfinite(x) else float(x)
