"""A1 — does contribution follow intensity and edges? (SPEC §4 A1)

Per layer and frame: heat map H(p) = Σ_k |C_k(p)| (streamed, one pass), intensity
I = Σ_c N(gt)_c (N = min-max normalisation over the whole RGB image), difference map N(H) − N(I),
and the Sobel edge magnitude of the grey image (skimage.filters.sobel of rgb2gray).
Variant "paper": the paper's canvas (the paper shows the maps only). Variant "linear": the same maps on
the exact linear canvas. Both variants report Pearson and Spearman correlations of H with intensity
and with edge magnitude. Figures: xinc.report.plots.a1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from xinc.analysis.registry import AnalysisContext, AnalysisResult, each_variant_layer, register_analysis

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


@dataclass
class IntensityOptions:
    """A1 has no tunable statistic; the maps of the first analysed frame are kept for the figure."""

    keep_maps: bool = True  # keep the four maps of the first frame per variant and layer (data/a1.npz)


def _layer(ctx: AnalysisContext, variant: str, cmode: str, layer: str) -> dict[str, Any]:
    """Heat maps of one layer, correlations per frame and their means, and the first frame's maps."""
    heats = heat_maps(ctx, layer, cmode)
    recs = [a1_correlations(heats[f], ctx.image(f)) for f in ctx.frames]
    mean = {k: _mean([r[k] for r in recs]) for k in recs[0]}
    return {"numbers": {**mean, "per_frame": recs}, "maps": a1_maps(heats[ctx.frames[0]], ctx.images[0]),
            "rows": [{"variant": variant, "canvas": cmode, "layer": layer, "frame": f, **c}
                     for f, c in zip(ctx.frames, recs)]}


@register_analysis(AID, "Contribution vs intensity and edges", options=IntensityOptions)
def run(ctx: AnalysisContext, opts: IntensityOptions) -> AnalysisResult:
    """Heat, intensity, difference and edge maps per layer; correlations per layer and frame."""
    grid = each_variant_layer(ctx, lambda v, cm, la: _layer(ctx, v, cm, la))
    res = AnalysisResult(numbers={"method": "H = Σ_k |C_k| streamed; I = Σ_c minmax(gt)_c; "
                                            "edges = sobel(rgb2gray(gt))",
                                  "canvas_modes": dict(ctx.variants()), "figure_frame": ctx.frames[0]})
    res.numbers["layers"] = {v: {la: r["numbers"] for la, r in layers.items()} for v, layers in grid.items()}
    res.tables["correlations"] = [row for layers in grid.values() for r in layers.values() for row in r["rows"]]
    if opts.keep_maps:
        res.arrays["image"] = np.asarray(ctx.images[0].detach().cpu(), dtype=np.float32)
        for v, layers in grid.items():
            for la, r in layers.items():
                res.arrays.update({f"{v}/{la}/{k}": m.astype(np.float32) for k, m in r["maps"].items()})
    for v, layers in res.numbers["layers"].items():
        for la, rec in layers.items():
            res.summary.append(
                f"{v} {la}: heat vs intensity Pearson {_fmt(rec['pearson_intensity'])} / Spearman "
                f"{_fmt(rec['spearman_intensity'])}; vs edges Pearson {_fmt(rec['pearson_edges'])} / Spearman "
                f"{_fmt(rec['spearman_edges'])}")
    return res


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.3f}"
