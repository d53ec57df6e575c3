"""A1 — does contribution follow intensity and edges? (SPEC §4 A1)

Per layer and frame: heat map H(p) = Σ_k |C_k(p)| (streamed, one pass), intensity
I = Σ_c N(gt)_c (N = min-max normalisation over the whole RGB image), difference map N(H) − N(I),
and the Sobel edge magnitude of the grey image (skimage.filters.sobel of rgb2gray).
Paper-faithful: the figures only (paper canvas). Corrected: the same maps on the exact linear canvas,
and (both variants) Pearson and Spearman correlations of H with intensity and with edge magnitude.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from xinc.analysis.registry import AnalysisContext, register_analysis, variants

AID = "a1"


def minmax(x: np.ndarray) -> np.ndarray:
    """(x − min) / (max − min); a constant map becomes zeros."""
    x = np.asarray(x, dtype=np.float64)
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def _img(image) -> np.ndarray:
    return np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image, dtype=np.float64)


def intensity_map(image) -> np.ndarray:
    """I = Σ_c N(image)_c for a (3, H, W) image, N = min-max over the whole image."""
    return minmax(_img(image)).sum(0)


def edge_map(image) -> np.ndarray:
    """Sobel edge magnitude of the grey (rgb2gray) image."""
    from skimage.color import rgb2gray
    from skimage.filters import sobel

    return sobel(rgb2gray(np.clip(_img(image), 0, 1).transpose(1, 2, 0)))


def a1_maps(heat, image) -> dict[str, np.ndarray]:
    """The four A1 maps of one frame: heat, intensity, difference N(H) − N(I), edges."""
    h = _img(heat)
    inten = intensity_map(image)
    return {"heat": h, "intensity": inten, "difference": minmax(h) - minmax(inten), "edges": edge_map(image)}


def correlations(x: np.ndarray, y: np.ndarray) -> dict[str, float | None]:
    """Pearson and Spearman correlation of two maps over pixels (None where a map is constant)."""
    from scipy.stats import pearsonr, spearmanr

    a, b = np.ravel(x).astype(np.float64), np.ravel(y).astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return {"pearson": None, "spearman": None}
    return {"pearson": float(pearsonr(a, b)[0]), "spearman": float(spearmanr(a, b)[0])}


def a1_correlations(heat, image) -> dict[str, float | None]:
    """Pearson/Spearman of the heat map with intensity and with Sobel edge magnitude."""
    m = a1_maps(heat, image)
    ci, ce = correlations(m["heat"], m["intensity"]), correlations(m["heat"], m["edges"])
    return {"pearson_intensity": ci["pearson"], "spearman_intensity": ci["spearman"],
            "pearson_edges": ce["pearson"], "spearman_edges": ce["spearman"]}


def heat_maps(ctx: AnalysisContext, layer: str, canvas_mode: str) -> dict[int, np.ndarray]:
    """Stream a layer once and return {frame: H (H, W)} with H = Σ_k |C_k|."""
    from xinc.canvas.reduce import HeatMap

    (red,) = ctx.stream(layer, [HeatMap()], canvas_mode=canvas_mode)
    return {f: v.numpy().astype(np.float64) for f, v in red.result().items()}


def _mean(vals: list[float | None]) -> float | None:
    v = [x for x in vals if x is not None]
    return float(np.mean(v)) if v else None


def _figure(ctx: AnalysisContext, variant: str, cmode: str, maps: dict[str, dict[str, np.ndarray]], frame: int):
    from xinc.report.figures import image_panel, new_figure

    layers = list(maps)
    pos = ctx.frames.index(frame)
    fig, axes = new_figure(len(layers), 5, panel=(2.9, 1.75),
                           title=f"A1 intensity & edges — {variant} ({cmode} canvas), frame {frame}")
    for r, layer in enumerate(layers):
        m = maps[layer]
        image_panel(axes[r, 0], ctx.images[pos], title=f"{layer}: image")
        image_panel(axes[r, 1], m["heat"], title=f"{layer}: heat map Σ|C|", cmap="inferno", label="Σ_k |C_k|")
        image_panel(axes[r, 2], m["intensity"], title=f"{layer}: intensity", cmap="gray", label="Σ_c N(I)_c")
        image_panel(axes[r, 3], m["difference"], title=f"{layer}: N(H) − N(I)", cmap="coolwarm", symmetric=True)
        image_panel(axes[r, 4], m["edges"], title=f"{layer}: Sobel edges", cmap="magma", label="|∇|")
    fig.tight_layout()
    return fig


def _corr_figure(per_layer: dict[str, dict[str, dict[str, Any]]]):
    from xinc.report.figures import new_figure

    fig, axes = new_figure(1, 2, panel=(4.2, 2.6), title="A1: correlation of the heat map with the image")
    keys = [("intensity", "pearson_intensity", "spearman_intensity"), ("edge magnitude", "pearson_edges",
                                                                         "spearman_edges")]
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


@register_analysis(AID, "Contribution vs intensity and edges")
def run(ctx: AnalysisContext) -> dict[str, Any]:
    """Heat, intensity, difference and edge maps per layer; correlations per layer and frame."""
    out: dict[str, Any] = {"method": "H = Σ_k |C_k| streamed; I = Σ_c minmax(gt)_c; edges = sobel(rgb2gray(gt))",
                           "figures": [], "summary": []}
    rows, per_layer = [], {}
    for variant, cmode in variants(ctx.mode):
        maps, per_layer[variant] = {}, {}
        for layer in ctx.layers:
            heats = heat_maps(ctx, layer, cmode)
            recs = []
            for f in ctx.frames:
                c = a1_correlations(heats[f], ctx.images[ctx.frames.index(f)])
                recs.append(c)
                rows.append({"variant": variant, "canvas": cmode, "layer": layer, "frame": f, **c})
            per_layer[variant][layer] = {k: _mean([r[k] for r in recs]) for k in recs[0]}
            per_layer[variant][layer]["per_frame"] = recs
            maps[layer] = a1_maps(heats[ctx.frames[0]], ctx.images[0])
        path = ctx.figure(AID, f"maps_{variant}", _figure(ctx, variant, cmode, maps, ctx.frames[0]))
        out["figures"].append({"path": ctx.rel(path), "caption": f"Heat map, intensity, difference and Sobel edges "
                                                                   f"per layer ({variant}, {cmode} canvas), frame "
                                                                   f"{ctx.frames[0]}."})
        for layer, rec in per_layer[variant].items():
            pi, pe = rec["pearson_intensity"], rec["pearson_edges"]
            si, se = rec["spearman_intensity"], rec["spearman_edges"]
            out["summary"].append(
                f"{variant} {layer}: heat vs intensity Pearson {_fmt(pi)} / Spearman {_fmt(si)}; "
                f"vs edges Pearson {_fmt(pe)} / Spearman {_fmt(se)}")
    path = ctx.figure(AID, "correlations", _corr_figure(per_layer))
    out["figures"].append({"path": ctx.rel(path), "caption": "Pearson and Spearman correlation of the heat map with "
                                                               "intensity and with Sobel edge magnitude, per layer."})
    ctx.table(AID, "correlations", rows)
    out["layers"] = per_layer
    return out


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.3f}"
