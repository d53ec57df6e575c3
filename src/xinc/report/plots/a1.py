"""Figures of A1 (contribution vs intensity and edges): the maps per layer, and the correlations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from xinc.analysis.registry import AnalysisResult, sub_arrays
from xinc.report.figures import image_panel, new_figure
from xinc.report.plots import FigureRef, register_plot, save_figure

AID = "a1"


def _maps_figure(image: np.ndarray, maps: dict[str, dict[str, np.ndarray]], title: str):
    layers = list(maps)
    fig, axes = new_figure(len(layers), 5, panel=(2.9, 1.75), title=title)
    for r, layer in enumerate(layers):
        m = maps[layer]
        image_panel(axes[r, 0], image, title=f"{layer}: image")
        image_panel(axes[r, 1], m["heat"], title=f"{layer}: heat map Σ|C|", cmap="inferno", label="Σ_k |C_k|")
        image_panel(axes[r, 2], m["intensity"], title=f"{layer}: intensity", cmap="gray", label="Σ_c N(I)_c")
        image_panel(axes[r, 3], m["difference"], title=f"{layer}: N(H) − N(I)", cmap="coolwarm", symmetric=True)
        image_panel(axes[r, 4], m["edges"], title=f"{layer}: Sobel edges", cmap="magma", label="|∇|")
    fig.tight_layout()
    return fig


def _corr_figure(per_layer: dict[str, dict[str, dict[str, Any]]]):
    fig, axes = new_figure(1, 2, panel=(4.2, 2.6), title="A1: correlation of the heat map with the image")
    keys = [("intensity", "pearson_intensity", "spearman_intensity"),
            ("edge magnitude", "pearson_edges", "spearman_edges")]
    for ax, (what, kp, ks) in zip(axes[0], keys):
        labels, xs = [], 0
        for variant, layers in per_layer.items():
            for layer, rec in layers.items():
                for j, (k, name) in enumerate(((kp, "Pearson"), (ks, "Spearman"))):
                    v = rec.get(k)
                    ax.bar(xs + 0.4 * j, 0 if v is None else v, width=0.38, color=("C0", "C1")[j],
                           label=name if xs == 0 else None)
                labels.append(f"{layer}\n{variant}")
                xs += 1
        ax.set_xticks(np.arange(xs) + 0.2)
        ax.set_xticklabels(labels, fontsize=6)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylim(-1, 1)
        ax.set_ylabel("correlation (mean over frames)")
        ax.set_title(f"heat map vs {what}")
        ax.legend(frameon=False)
    fig.tight_layout()
    return fig


@register_plot(AID)
def plot(result: AnalysisResult, out: Path) -> list[FigureRef]:
    """Per variant: image, heat, intensity, difference and edge maps per layer; then the correlation bars."""
    figs = []
    per_layer = result.numbers.get("layers", {})
    modes = result.numbers.get("canvas_modes", {})
    frame = result.numbers.get("figure_frame", 0)
    if "image" in result.arrays:
        for variant, layers in per_layer.items():
            maps = {la: sub_arrays(result.arrays, f"{variant}/{la}") for la in layers}
            title = f"A1 intensity & edges — {variant} ({modes.get(variant, variant)} canvas), frame {frame}"
            fig = _maps_figure(result.arrays["image"], maps, title)
            figs.append(save_figure(fig, out, AID, f"maps_{variant}", f"Heat map, intensity, difference and Sobel "
                                    f"edges per layer ({variant}, {modes.get(variant, variant)} canvas), frame "
                                    f"{frame}."))
    figs.append(save_figure(_corr_figure(per_layer), out, AID, "correlations", "Pearson and Spearman correlation "
                            "of the heat map with intensity and with Sobel edge magnitude, per layer."))
    return figs
