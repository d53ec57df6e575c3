"""Figures of A2 (representations are distributed): pixels per neuron, neurons per pixel maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xinc.analysis.registry import AnalysisResult, sub_arrays
from xinc.report.figures import image_panel, new_figure
from xinc.report.plots import FigureRef, register_plot, save_figure

AID = "a2"
MASS_LEVELS = ("0.1", "0.5")
QUANTILES = ("0.5", "0.9")


def _ppn_figure(variant: str, cmode: str, section: dict, arrays: dict[str, np.ndarray]):
    fig, axes = new_figure(1, 1, panel=(5.0, 3.0), title=f"A2 pixels per neuron — {variant} ({cmode} canvas)")
    ax = axes[0, 0]
    for layer, r in section.items():
        y = arrays.get(f"{layer}/fraction_sorted")
        if y is None or r.get("empty"):
            continue
        ax.plot(np.linspace(0, 1, len(y)), y, label=f"{layer} (K={r['num_neurons']})")
    ax.set_xlabel("neuron rank / K (sorted by pixels covered)")
    ax.set_ylabel("fraction of pixels with share > 1/K")
    ax.legend(frameon=False)
    return fig


def _npp_figure(variant: str, cmode: str, section: dict, arrays: dict[str, np.ndarray], layers: list[str], f0,
                needed: bool):
    fig, axes = new_figure(len(layers), 4 if needed else 2, panel=(3.0, 1.8),
                           title=f"A2 neurons per pixel — {variant} ({cmode} canvas), frame {f0}")
    for i, layer in enumerate(layers):
        r = section[layer]
        for j, a in enumerate(MASS_LEVELS):
            tau = r["thresholds"][a]["tau"]
            image_panel(axes[i, j], arrays[f"{layer}/n/{a}"], cmap="viridis", label="n(p)/K",
                        title=f"{layer}: n(p)/K, a={a} (τ={tau:.3g})")
        for j, q in enumerate(QUANTILES if needed else ()):
            image_panel(axes[i, 2 + j], arrays[f"{layer}/needed/{q}"], cmap="magma", label="neurons",
                        title=f"{layer}: neurons for {int(float(q) * 100)}% of H(p)")
    fig.tight_layout()
    return fig


@register_plot(AID)
def plot(result: AnalysisResult, out: Path) -> list[FigureRef]:
    """Per variant: sorted pixels-per-neuron curves, and n(p)/K maps per layer (beside them the neurons-needed maps
    when the run computed them: --option a2.neurons_needed=true)."""
    figs = []
    modes = result.numbers.get("canvas_modes", {})
    for variant, cmode in modes.items():
        section = result.numbers.get(variant, {})
        arrays = sub_arrays(result.arrays, variant)
        figs.append(save_figure(_ppn_figure(variant, cmode, section, arrays), out, AID,
                                f"pixels_per_neuron_{variant}", "Sorted fraction of pixels each neuron covers "
                                f"(share > 1/K), per layer ({variant})."))
        layers = [la for la, r in section.items() if not r.get("empty") and f"{la}/n/0.1" in arrays]
        if layers:
            needed = all(f"{la}/needed/{q}" in arrays for la in layers for q in QUANTILES)
            fig = _npp_figure(variant, cmode, section, arrays, layers, result.numbers.get("figure_frame", 0), needed)
            caption = ("Neurons per pixel above the mass thresholds τ_a (a = 0.1, 0.5), and the fewest neurons "
                       f"holding 50 % / 90 % of each pixel's contribution ({variant}; lower bound where bracketed)."
                       if needed else f"Neurons per pixel above the mass thresholds τ_a (a = 0.1, 0.5) ({variant}; "
                       "neurons needed per pixel not computed: --option a2.neurons_needed=true).")
            figs.append(save_figure(fig, out, AID, f"neurons_per_pixel_{variant}", caption))
    return figs
