"""Shared matplotlib helpers so every analysis figure looks the same: headless backend, one style,
image panels with colour bars and layer-named titles, and category palettes for any number of
categories (names shown verbatim, underscores included)."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

STYLE = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "figure.dpi": 120,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "text.usetex": False,
}


def new_figure(nrows: int = 1, ncols: int = 1, *, panel: tuple[float, float] = (3.2, 2.0), title: str | None = None,
               squeeze: bool = False, **kw):
    """A figure of nrows x ncols panels of size `panel` inches, in the project style; axes as a 2-D array."""
    plt.rcParams.update(STYLE)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel[0] * ncols, panel[1] * nrows + (0.4 if title else 0)),
                             squeeze=squeeze, **kw)
    if title:
        fig.suptitle(plain(title), fontsize=10)
    return fig, axes


def plain(text: str) -> str:
    """Escape text for matplotlib so '$' and '_' never trigger mathtext (names appear verbatim)."""
    return str(text).replace("$", r"\$")


def image_panel(ax, data, *, title: str = "", cmap: str = "viridis", vmin=None, vmax=None, colorbar: bool = True,
                label: str = "", symmetric: bool = False):
    """Show a (H, W) map (or (H, W, 3) image) with a title and (for maps) a colour bar."""
    arr = np.asarray(data.detach().cpu() if hasattr(data, "detach") else data, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[0] == 3:
        arr = arr.transpose(1, 2, 0)
    if arr.ndim == 3:
        im = ax.imshow(np.clip(arr, 0, 1), interpolation="nearest")
        colorbar = False
    else:
        if symmetric:
            m = float(np.nanmax(np.abs(arr))) if arr.size else 1.0
            vmin, vmax = -m, m
        im = ax.imshow(arr, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ("top", "right", "left", "bottom"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(plain(title))
    if colorbar:
        cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        cb.ax.tick_params(labelsize=6)
        if label:
            cb.set_label(plain(label), fontsize=7)
    return im


def category_colors(n: int) -> list[tuple[float, float, float]]:
    """n distinct non-grey colours: tab10/tab20 for up to 18, else golden-ratio hues at alternating lightness."""
    tab10 = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7]  # greys are kept for "unlabelled"
    tab20 = [c for i, c in enumerate(plt.get_cmap("tab20").colors) if i not in (14, 15)]
    if n <= len(tab10):
        return [tuple(c[:3]) for c in tab10[:n]]
    if n <= len(tab20):
        return [tuple(c[:3]) for c in tab20[:n]]
    out = []
    for i in range(n):
        h = (i * 0.618033988749895) % 1.0
        light = (0.42, 0.58, 0.5)[i % 3]
        out.append(colorsys.hls_to_rgb(h, light, 0.75))
    return out


def category_palette(names: Sequence[str], fixed: dict[str, tuple[float, float, float]] | None = None
                     ) -> dict[str, tuple[float, float, float]]:
    """Map each distinct name (order kept) to a colour; `fixed` entries (e.g. unlabelled = grey) win."""
    fixed = dict(fixed or {})
    rest = [n for n in dict.fromkeys(names) if n not in fixed]
    return {**dict(zip(rest, category_colors(len(rest)))), **{k: v for k, v in fixed.items() if k in names}}


def category_legend(ax_or_fig, palette: dict[str, tuple[float, float, float]], *, title: str | None = None,
                    max_cols: int = 4, styles: dict[str, str] | None = None, **kw):
    """Legend with one explicit handle per category, so names starting with '_' are not dropped."""
    from matplotlib.lines import Line2D

    styles = styles or {}
    handles = [Line2D([0], [0], color=c, lw=2, ls=styles.get(n, "-")) for n, c in palette.items()]
    labels = [plain(n) for n in palette]
    ncol = max(1, min(max_cols, int(np.ceil(len(labels) / 12))))
    return ax_or_fig.legend(handles, labels, title=title, ncol=ncol, frameon=False, **kw)


def layer_title(layer: str, text: str = "") -> str:
    """'<layer>: <text>' (or just the layer)."""
    return f"{layer}: {text}" if text else layer
