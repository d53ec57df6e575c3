"""Figures of A5 (what do neurons care about): ln √V per grouping, and the excess over the null model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xinc.analysis.registry import AnalysisResult, sub_arrays
from xinc.report.figures import new_figure
from xinc.report.plots import FigureRef, register_plot, save_figure

AID = "a5"


def _p(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _boxes(ax, raw: dict[str, np.ndarray], null: dict[str, np.ndarray]) -> None:
    names = list(raw)
    data = [raw[n][np.isfinite(raw[n])] for n in names]
    pos = np.arange(1, len(names) + 1, dtype=float)
    if null:
        b = ax.boxplot(data, positions=pos - 0.18, widths=0.32, showfliers=False, patch_artist=True)
        nd = [null[n][np.isfinite(null[n])] if n in null else np.zeros(0) for n in names]
        bn = ax.boxplot(nd, positions=pos + 0.18, widths=0.32, showfliers=False, patch_artist=True)
        for p in bn["boxes"]:
            p.set_facecolor("0.85")
            p.set_hatch("//")
        ax.legend([b["boxes"][0], bn["boxes"][0]], ["grouping", "null (same sizes)"], frameon=False, loc="best")
    else:
        b = ax.boxplot(data, positions=pos, widths=0.5, showfliers=False, patch_artist=True)
    for p in b["boxes"]:
        p.set_facecolor("C0")
        p.set_alpha(0.7)
    ax.set_xticks(pos)
    ax.set_xticklabels([n.replace("_", " ") for n in names], rotation=30, fontsize=7)


def _boxplot(variant: str, cmode: str, arrays: dict[str, np.ndarray], layers: list[str]):
    fig, axes = new_figure(1, len(layers), panel=(3.3, 2.8), sharey=True,
                           title=f"A5 ln √V per grouping — {variant} ({cmode} canvas)")
    for ax, layer in zip(axes[0], layers):
        _boxes(ax, sub_arrays(arrays, f"{layer}/raw"), sub_arrays(arrays, f"{layer}/null"))
        ax.set_title(layer)
        ax.set_ylabel("ln √V_k")
    fig.tight_layout()
    return fig


def _excess_plot(orders: dict[str, dict]):
    layers = list(orders)
    fig, axes = new_figure(1, len(layers), panel=(3.0, 2.6), sharey=True,
                           title="A5 linear: median ln √V − ln √V_null (95% bootstrap CI)")
    for ax, layer in zip(axes[0], layers):
        o = orders[layer]
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


@register_plot(AID)
def plot(result: AnalysisResult, out: Path) -> list[FigureRef]:
    """Per variant: boxes of ln √V_k per grouping and layer; for the linear variant the excess over null."""
    figs = []
    for variant, cmode in result.numbers.get("canvas_modes", {}).items():
        section = {k: v for k, v in result.numbers.get(variant, {}).items() if k != "group_counts"}
        arrays = sub_arrays(result.arrays, variant)
        layers = [la for la in section if any(k.startswith(f"{la}/raw/") for k in arrays)]
        if not layers:
            continue
        hatched = any(k.startswith(f"{la}/null/") for la in layers for k in arrays)
        figs.append(save_figure(_boxplot(variant, cmode, arrays, layers), out, AID, f"boxplots_{variant}",
                                f"ln √V_k per grouping and layer ({variant}, {cmode} canvas)"
                                + ("; hatched = random partitions of the same sizes." if hatched else ".")))
        orders = {la: section[la]["ordering"] for la in layers
                  if section[la].get("statistic", "").endswith("V_null)") and section[la]["ordering"]["medians"]}
        if orders:
            figs.append(save_figure(_excess_plot(orders), out, AID, "excess_over_null", "Median selectivity in "
                                    "excess of the null model, with 95% bootstrap intervals over neurons, per "
                                    "grouping and layer."))
    return figs
