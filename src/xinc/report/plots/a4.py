"""Figures of A4 (motion): change maps beside the flow, and AUROC per frame pair."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from xinc.analysis.registry import AnalysisResult, sub_arrays
from xinc.report.figures import new_figure
from xinc.report.plots import FigureRef, register_plot, save_figure

AID = "a4"


def _maps_figure(arrays: dict[str, np.ndarray], pairs: np.ndarray, keys: list[str], threshold: float, comp: bool):
    import matplotlib.pyplot as plt

    n_show, ncols = len(pairs), 3 + len(keys)
    h, w = arrays["shown/0/magnitude"].shape
    pw = 1.9
    ph = pw * h / w
    fig, axes = plt.subplots(n_show, ncols, figsize=(ncols * pw + 0.4, n_show * (ph + 0.32) + 0.45), squeeze=False,
                             layout="constrained")
    for r, (fa, fb) in enumerate(pairs.tolist()):
        mag = arrays[f"shown/{r}/magnitude"]
        panels = [(arrays[f"shown/{r}/image"].transpose(1, 2, 0), f"frame {fb}", None),
                  (mag, "flow magnitude" + (" (cam.-comp.)" if comp else ""), "magma"),
                  (mag > threshold, f"moving (> {threshold:g} px)", "gray")]
        panels += [(arrays[f"shown/{r}/change/{k}"], f"M_t {k}", "viridis") for k in keys]
        for c, (data, title, cmap) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(data, cmap=cmap, interpolation="nearest")
            ax.set_title(title if r == 0 or c == 0 else "", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(f"frames {fa}→{fb}", fontsize=8)
    fig.suptitle(r"A4: contribution change $M_t = \sum_k |A_k^t - A_k^{t-1}|$ beside the motion", fontsize=9)
    return fig


def _value(v: Any) -> float:
    return np.nan if v in (None, "") else float(v)


def _auroc_figure(rows: list[dict[str, Any]], keys: list[str], comp: bool):
    fig, axes = new_figure(1, 1, panel=(6.0, 3.0))
    ax = axes[0, 0]
    for k in keys:
        layer, _, variant = k.partition("/")
        sel = [r for r in rows if r["layer"] == layer and (not variant or r["variant"] == variant)]
        xs = [int(r["frame_next"]) for r in sel]
        line = ax.plot(xs, [_value(r["auroc"]) for r in sel], marker="o", ms=3, label=k)[0]
        if comp:
            ax.plot(xs, [_value(r.get("auroc_compensated")) for r in sel], ls="--", color=line.get_color(), lw=1)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set_ylim(0, 1)
    ax.set_xlabel("frame t")
    ax.set_ylabel("AUROC of M_t (moving pixels)")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("A4: how well M_t finds moving pixels" + (" (dashed: camera-compensated)" if comp else ""),
                 fontsize=9)
    return fig


@register_plot(AID)
def plot(result: AnalysisResult, out: Path) -> list[FigureRef]:
    """Frame, flow magnitude, moving region and M_t per layer for the shown pairs; AUROC per pair."""
    n = result.numbers
    if n.get("skipped"):
        return []
    keys, thr, comp = list(n.get("layers", {})), float(n["threshold_px"]), bool(n["compensated"])
    figs = []
    pairs = result.arrays.get("shown/pairs")
    if pairs is not None and len(pairs):
        shown = {k: v for k, v in result.arrays.items() if k.startswith("shown/")}
        keys_here = [k for k in keys if f"shown/0/change/{k}" in shown] or list(sub_arrays(shown, "shown/0/change"))
        figs.append(save_figure(_maps_figure(shown, pairs, keys_here, thr, comp), out, AID, "change_maps",
                                "Frame t, flow magnitude and moving region, and the contribution change M_t of "
                                "each layer for the frame pairs with the most motion."))
        figs.append(save_figure(_auroc_figure(result.tables.get("scores", []), keys, comp), out, AID, "auroc",
                                "AUROC of the contribution change as a detector of pixels moving more than "
                                f"{thr:g} px, per layer and frame pair (0.5 = chance)."))
    return figs
