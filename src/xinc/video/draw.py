"""Drawing of video frames from precomputed data: coloured panels with titles and colour bars, laid out on a
grid under a header line. Pure functions of arrays (no model, no canvas)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

TITLE_H, BAR_H, PAD, HEADER_H = 18, 26, 6, 26
SIGNED_CMAP, POSITIVE_CMAP = "RdBu_r", "magma"


@lru_cache(maxsize=8)
def font(size: int = 12) -> ImageFont.ImageFont:
    """Pillow's bundled font at a pixel size (no system fonts needed)."""
    return ImageFont.load_default(size=size)


@lru_cache(maxsize=8)
def _lut(name: str) -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def colorize(values: np.ndarray, lo: float, hi: float, cmap: str) -> np.ndarray:
    """(h, w) floats -> (h, w, 3) uint8 through a 256-entry colour table over [lo, hi] (clipped)."""
    span = hi - lo if hi > lo else 1.0
    idx = np.clip(np.rint((np.asarray(values, np.float64) - lo) / span * 255), 0, 255).astype(np.uint8)
    return _lut(cmap)[idx]


def signed_rgb(m: np.ndarray, lim: float) -> np.ndarray:
    """A signed map on a symmetric diverging scale [-lim, lim] (white = 0)."""
    lim = float(lim) if lim > 0 else 1.0
    return colorize(m, -lim, lim, SIGNED_CMAP)


def image_rgb(x: np.ndarray) -> np.ndarray:
    """(3, h, w) float [0, 1] -> (h, w, 3) uint8."""
    return np.clip(np.rint(np.moveaxis(np.asarray(x, np.float32), 0, -1) * 255), 0, 255).astype(np.uint8)


def fmt_value(v: float) -> str:
    """Short number for a colour-bar tick."""
    return f"{v:.2g}" if abs(v) < 1e-2 or abs(v) >= 1e3 else f"{v:.3g}"


@dataclass
class Panel:
    """One tile: a picture with a title above and, optionally, a colour bar (cmap, lo, hi) below."""

    title: str
    rgb: np.ndarray
    bar: tuple[str, float, float] | None = None


def colorbar(width: int, cmap: str, lo: float, hi: float) -> Image.Image:
    """A horizontal colour bar strip with its end values and midpoint written under it."""
    img = Image.new("RGB", (width, BAR_H), "white")
    ramp = np.repeat(_lut(cmap)[None], 8, axis=0)
    img.paste(Image.fromarray(ramp).resize((width, 8), Image.BILINEAR), (0, 2))
    draw = ImageDraw.Draw(img)
    f = font(11)
    for frac, v in ((0.0, lo), (0.5, (lo + hi) / 2), (1.0, hi)):
        text = fmt_value(v)
        tw = draw.textlength(text, font=f)
        x = min(max(0, frac * width - tw / 2), width - tw)
        draw.text((x, 11), text, fill="black", font=f)
    return img


def tile(p: Panel, size: tuple[int, int]) -> Image.Image:
    """The panel drawn at `size` (h, w) with its title strip and colour-bar strip."""
    h, w = size
    img = Image.new("RGB", (w, TITLE_H + h + BAR_H), "white")
    pic = Image.fromarray(p.rgb)
    if pic.size != (w, h):
        pic = pic.resize((w, h), Image.NEAREST if pic.size[0] < w else Image.BILINEAR)
    img.paste(pic, (0, TITLE_H))
    draw = ImageDraw.Draw(img)
    f, title = font(12), p.title
    while len(title) > 4 and draw.textlength(title, font=f) > w:
        title = title[:-2]
    draw.text((1, 2), title if title == p.title else title[:-1] + "…", fill="black", font=f)
    if p.bar is not None:
        img.paste(colorbar(w, *p.bar), (0, TITLE_H + h))
    return img


def compose(rows: list[list[Panel | None]], size: tuple[int, int], header: str) -> np.ndarray:
    """Lay panels out on a grid under a header line; (H, W, 3) uint8 with even H and W (H.264, yuv420p)."""
    h, w = size
    ncols = max(len(r) for r in rows)
    th = TITLE_H + h + BAR_H
    W = PAD + ncols * (w + PAD)
    H = HEADER_H + len(rows) * (th + PAD)
    W, H = W + W % 2, H + H % 2
    img = Image.new("RGB", (W, H), "white")
    ImageDraw.Draw(img).text((PAD, 5), header, fill="black", font=font(14))
    for r, row in enumerate(rows):
        for c, p in enumerate(row):
            if p is not None:
                img.paste(tile(p, size), (PAD + c * (w + PAD), HEADER_H + r * (th + PAD)))
    return np.asarray(img)


def text_panel(lines: list[str], size: tuple[int, int]) -> np.ndarray:
    """A white picture holding a few lines of text (legend / notes tile)."""
    h, w = size
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        draw.text((4, 4 + 15 * i), line, fill="black", font=font(12))
    return np.asarray(img)


def wheel_legend(size: int) -> np.ndarray:
    """The flow colour wheel itself (direction = hue, length = saturation), for the flow panel's corner."""
    from xinc.data.flow import flow_to_color

    r = np.linspace(-1, 1, size)
    u, v = np.meshgrid(r, r)
    rgb = flow_to_color(np.stack([u, v]), 1.0)
    rgb[(u * u + v * v) > 1] = 255
    return rgb
