"""Figures of A7 (faithfulness): deletion/insertion curves, map-vs-ablation agreement, region deletion."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xinc.analysis.registry import AnalysisResult, sub_arrays
from xinc.report.figures import new_figure
from xinc.report.plots import FigureRef, register_plot, save_figure

AID = "a7"


def _curves_figure(result: AnalysisResult, layers: list[str]):
    f = np.asarray(result.arrays["fractions"])
    fig, axes = new_figure(len(layers), 2, panel=(3.4, 2.2), title="A7: PSNR as neurons are removed / inserted")
    for r, layer in enumerate(layers):
        for c, what in enumerate(("deletion", "insertion")):
            ax = axes[r, c]
            aucs = result.numbers["layers"][layer].get(f"{what}_auc", {})
            for name, y in sub_arrays(result.arrays, f"{layer}/{what}").items():
                ax.plot(f, y, marker="o", ms=2.5, lw=1.2, ls="--" if name == "random" else "-",
                        label=f"{name} (AUC {aucs.get(name, float('nan')):.1f} dB)")
            ax.set_title(f"{layer}: {what} (highest first)", fontsize=8)
            ax.set_xlabel("fraction of the layer's neurons " + ("removed" if what == "deletion" else "kept"))
            ax.set_ylabel("PSNR (dB)")
            ax.legend(fontsize=5.5, frameon=False)
    fig.tight_layout()
    return fig


def _agreement_figure(result: AnalysisResult, layers: list[str]):
    fig, axes = new_figure(1, 2, panel=(4.2, 2.6), title="A7: neuron maps vs the true effect of removing the neuron")
    for ax, key, label in ((axes[0, 0], "pearson", "Pearson r (map, ablation change)"),
                           (axes[0, 1], "rel_error", "relative error ||C − Δ|| / ||Δ||")):
        data, ticks = [], []
        for layer in layers:
            for mode, vals in sub_arrays(result.arrays, f"{layer}/{key}").items():
                v = np.asarray(vals, dtype=np.float64)
                v = v[np.isfinite(v)]
                data.append(np.maximum(v, 1e-9) if key == "rel_error" else v)  # exact maps: 0 on a log axis
                ticks.append(f"{layer}\n{mode}")
        if data:
            ax.boxplot([d if d.size else np.array([np.nan]) for d in data], showfliers=False)
            for j, d in enumerate(data):
                ax.plot(np.full(d.size, j + 1.0) + np.linspace(-0.15, 0.15, d.size), d, ".", ms=2, alpha=0.5)
            ax.set_xticks(np.arange(1, len(ticks) + 1))
            ax.set_xticklabels(ticks, fontsize=6)
        if key == "rel_error":
            ax.set_yscale("log")
        ax.set_ylabel(label)
    fig.tight_layout()
    return fig


def region_label(numbers: dict) -> str:
    """What the region of the region-restricted deletion was (a segment of the labels or a pixel box)."""
    reg = numbers.get("region") or {}
    return reg.get("label") or f"the box {numbers.get('region_box')}"


def _region_figure(result: AnalysisResult, layers: list[str]):
    f = np.asarray(result.arrays["fractions"])
    mask = result.arrays.get("region_mask")
    extra = mask is not None
    fig, axes = new_figure(1, len(layers) + extra, panel=(3.0, 2.3),
                           title=f"A7: deletion ranked by |C| inside {region_label(result.numbers)}")
    if extra:
        ax = axes[0, 0]
        ax.imshow(np.asarray(mask), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"region (white), frame {result.numbers.get('frames', ['?'])[0]}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for c, layer in enumerate(layers):
        ax = axes[0, c + extra]
        for j, (name, y_in) in enumerate(sub_arrays(result.arrays, f"{layer}/region_in").items()):
            y_out = result.arrays[f"{layer}/region_out/{name}"]
            ax.plot(f, y_in, color=f"C{j}", lw=1.3, label=f"{name} inside")
            ax.plot(f, y_out, color=f"C{j}", lw=1.0, ls=":", label=f"{name} outside")
        ax.set_title(layer, fontsize=8)
        ax.set_xlabel("fraction removed")
        ax.set_ylabel("PSNR change (dB)")
        ax.legend(fontsize=5, frameon=False)
    fig.tight_layout()
    return fig


@register_plot(AID)
def plot(result: AnalysisResult, out: Path) -> list[FigureRef]:
    """Deletion/insertion curves per layer and ranking; agreement of maps with ablations; region deletion."""
    layers = list(result.numbers.get("layers", {}))
    if not layers or "fractions" not in result.arrays:
        return []
    figs = [save_figure(_curves_figure(result, layers), out, AID, "curves",
                        "PSNR vs the fraction of a layer's neurons removed (deletion, highest-ranked first) or kept "
                        "(insertion), ranked by total |C| per canvas mode, by the weight L1 of the slice, or at "
                        "random; AUC = mean PSNR over the curve (lower deletion AUC: the ranking finds what "
                        "matters)."),
            save_figure(_agreement_figure(result, layers), out, AID, "agreement",
                        "Per sampled neuron: Pearson correlation and relative error between its map and the true "
                        "change of the output logits (summed over RGB) when it is removed, per layer and mode.")]
    if any(sub_arrays(result.arrays, f"{layer}/region_in") for layer in layers):
        where = region_label(result.numbers)
        figs.append(save_figure(_region_figure(result, layers), out, AID, "region",
                                f"Region-restricted deletion: neurons ranked by |C| inside {where} (or at random) are "
                                "removed; PSNR change inside (solid) vs outside (dotted) the region."))
    return figs
