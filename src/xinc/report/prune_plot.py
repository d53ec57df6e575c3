"""Figure of `xinc prune`: PSNR vs nonzero parameters for each ranking and NeRV's L1 unstructured pruning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xinc.report.figures import new_figure
from xinc.report.plots import FigureRef, save_figure

STYLE = {"contribution": ("C0", "o"), "magnitude": ("C1", "s"), "random": ("C2", "^"), "l1-unstructured": ("C3", "x")}


def psnr_vs_params(results: dict[str, Any], out: Path) -> list[FigureRef]:
    """OUT/figures/prune/psnr_vs_params.png/.pdf from results.json's runs and baseline."""
    base, runs = results["baseline"], results["runs"]
    tuned = any("psnr_finetuned" in r for r in runs)
    fig, axes = new_figure(1, 2 if tuned else 1, panel=(4.4, 3.0), title="Pruning: PSNR vs nonzero parameters")
    for ax, key, what in ((axes[0, 0], "psnr", "after pruning"),) + (((axes[0, 1], "psnr_finetuned",
                                                                      "after fine-tuning"),) if tuned else ()):
        for method in dict.fromkeys(r["method"] for r in runs):
            rs = sorted((r for r in runs if r["method"] == method and key in r), key=lambda r: -r["nonzero"])
            color, marker = STYLE.get(method, ("k", "."))
            ax.plot([base["nonzero"]] + [r["nonzero"] for r in rs], [base["psnr"]] + [r[key] for r in rs],
                    color=color, marker=marker, ms=4, lw=1.2, ls="--" if method == "l1-unstructured" else "-",
                    label=method + (" (NeRV's global L1)" if method == "l1-unstructured" else " (structured)"))
        ax.plot([base["nonzero"]], [base["psnr"]], "k*", ms=8, label="unpruned")
        ax.set_xlabel("nonzero parameters")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(what, fontsize=8)
        ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return [save_figure(fig, Path(out), "prune", "psnr_vs_params",
                        "PSNR vs nonzero parameters: neurons removed by total |C|, weight L1 or at random "
                        "(structured), and NeRV's global L1 unstructured pruning at equal sparsity.")]
