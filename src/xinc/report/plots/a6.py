"""Figures of A6 (neuron clustering): embedding and cluster profiles; cluster-average and member maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xinc.analysis.registry import AnalysisResult, sub_arrays
from xinc.report.plots import FigureRef, register_plot, save_figure

AID = "a6"


def _norm_img(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def _mosaic(tiles: list[list[np.ndarray]], cols: int, shape: tuple[int, int], pad: int = 3
            ) -> tuple[np.ndarray, tuple[int, int]]:
    """Rows of equally sized maps laid out on one NaN-padded canvas (one imshow instead of many axes)."""
    h, w = shape
    ph, pw = h + pad, w + pad
    out = np.full((len(tiles) * ph - pad, cols * pw - pad), np.nan, dtype=np.float32)
    for i, row in enumerate(tiles):
        for j, t in enumerate(row[:cols]):
            out[i * ph:i * ph + h, j * pw:j * pw + w] = t
    return out, (ph, pw)


def _embedding_figure(result: AnalysisResult, layers: list[str]):
    import matplotlib.pyplot as plt

    a, n = result.arrays, result.numbers
    groups = a["pixel_groups"]
    fig, axes = plt.subplots(2, len(layers) + 1, figsize=(3.0 * (len(layers) + 1), 5.4), squeeze=False)
    axes[0, 0].imshow(a["image"].transpose(1, 2, 0))
    axes[0, 0].set_title(f"frame {n['frame']}", fontsize=8)
    axes[1, 0].imshow(groups, cmap="tab20", interpolation="nearest")
    axes[1, 0].set_title(f"{groups.max() + 1} Gabor k-means groups", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_xticks([])
        ax.set_yticks([])
    for j, layer in enumerate(layers, start=1):
        r = sub_arrays(a, layer)
        ax = axes[0, j]
        if len(r["labels"]):
            ax.scatter(r["embedding"][:, 0], r["embedding"][:, 1], c=r["labels"], cmap="tab10", s=8, vmin=0, vmax=9)
        ax.set_title(f"{layer}: {len(r['neurons'])} neurons ({n['layers'][layer].get('embedding', '')})", fontsize=8)
        ax.tick_params(labelsize=6)
        ax = axes[1, j]
        if len(r["centers"]):
            ax.imshow(r["centers"], aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xlabel("Gabor group", fontsize=7)
        ax.set_ylabel("cluster", fontsize=7)
        ax.set_title("cluster mean profile", fontsize=8)
        ax.tick_params(labelsize=6)
    fig.suptitle("A6: neurons embedded by their mean normalised |C| per Gabor texture group", fontsize=9)
    fig.tight_layout()
    return fig


def _cluster_row(ax, r: dict[str, np.ndarray], members: int, shape: tuple[int, int], cmap) -> None:
    ids, owner = r["member_ids"].tolist(), r["member_cluster"].tolist()
    per = {c: [k for k, o in zip(ids, owner) if o == c] for c in range(len(r["cluster_maps"]))}
    maps = dict(zip(ids, r["member_maps"]))
    tiles = [[_norm_img(r["cluster_maps"][c])] + [maps[k] for k in per[c]] for c in per]
    mosaic, pitch = _mosaic(tiles, members + 1, shape)
    ax.imshow(mosaic, cmap=cmap, vmin=0, vmax=1, interpolation="antialiased")
    ax.set_yticks([(c + 0.5) * pitch[0] for c in per],
                  [f"c{c} (n={int((r['labels'] == c).sum())})" for c in per], fontsize=7)
    ax.set_xticks([(j + 0.5) * pitch[1] for j in range(members + 1)],
                  ["cluster average"] + [f"member {j}" for j in range(1, members + 1)], fontsize=7)
    ax.tick_params(length=0)
    ax.xaxis.tick_top()
    for side in ax.spines.values():
        side.set_visible(False)
    for c, row in per.items():
        for j, k in enumerate(row, start=1):
            ax.text(j * pitch[1] + 2, c * pitch[0] + 2, f"#{k}", fontsize=6, color="white", va="top", ha="left")


def _clusters_figure(result: AnalysisResult, shown: list[str]):
    import matplotlib
    import matplotlib.pyplot as plt

    members = int(result.numbers.get("members", 6))
    shape = result.arrays["pixel_groups"].shape
    rows = [len(result.arrays[f"{la}/cluster_maps"]) for la in shown]
    fig, axes = plt.subplots(len(shown), 1, figsize=(10.0, sum(rows) * 10.0 / (1 + members) / (shape[1] / shape[0])
                                                     * 0.92 + 0.55 * len(shown) + 0.3),
                             gridspec_kw={"height_ratios": rows}, squeeze=False)
    cmap = matplotlib.colormaps["inferno"].with_extremes(bad="white")
    for ax, layer in zip(axes[:, 0], shown):
        _cluster_row(ax, sub_arrays(result.arrays, layer), members, shape, cmap)
        ax.set_ylabel(layer, fontsize=9)
    fig.suptitle("A6: cluster-average |C| maps and seeded member neurons (each map min-max normalised)", fontsize=9)
    fig.tight_layout()
    return fig


@register_plot(AID)
def plot(result: AnalysisResult, out: Path) -> list[FigureRef]:
    """Embedding scatter + cluster profiles; per layer the cluster averages with member galleries."""
    layers = list(result.numbers.get("layers", {}))
    if "image" not in result.arrays or not any(f"{la}/cluster_maps" in result.arrays for la in layers):
        return []
    figs = [save_figure(_embedding_figure(result, layers), out, AID, "embedding", "Left: the frame and its Gabor "
                        "k-means pixel groups. Top: each live neuron's group-mean vector embedded in 2-D, coloured by "
                        "cluster. Bottom: the mean vector of each cluster (rows) over the texture groups (columns).")]
    shown = [la for la in layers if len(result.arrays.get(f"{la}/cluster_maps", ()))]
    if shown:
        figs.append(save_figure(_clusters_figure(result, shown), out, AID, "clusters", "Per layer and cluster: the "
                                "average min-max-normalised contribution map of the cluster's neurons (first column) "
                                f"and up to {result.numbers.get('members', 6)} seeded member neurons (#k = neuron "
                                "index, c_in-major)."))
    return figs
