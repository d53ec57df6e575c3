"""Figures as the report embeds them: scaled to the width they are shown at and re-encoded as WebP.

Matplotlib writes PNGs at 120 dpi, often twice as wide as the page shows them, and PNG is a poor format
for the photographic panels (canvases, heat maps) most of our figures hold. The report therefore embeds
each figure at most `max_width` pixels wide (about 1.25x its displayed width), lossless WebP when the
figure has few colours (line plots, bar charts: exact pixels, smaller than PNG) and lossy WebP (quality
`QUALITY`) when it has many (image panels), whichever is smaller than the original file. The PNG/PDF
files of the run are left untouched for print and slides.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

QUALITY = 85  # lossy WebP quality for figures with image panels (text stays sharp at this level)
FEW_COLOURS = 2048  # at most this many distinct colours: a plot, encoded losslessly


IMAGE_SUFFIXES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}
HERO_WIDTH = 1400  # px of a hero figure (shown up to 1116 CSS px wide)
FIGURE_WIDTH = 1120  # px of a section figure (shown at most at its own width, up to the page width)


def image_mime(path: Path) -> str | None:
    """The image type of a figure file by suffix and content (png, jpeg, svg), else None."""
    mime = IMAGE_SUFFIXES.get(path.suffix.lower())
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return None
    if mime == "image/png" and head.startswith(b"\x89PNG\r\n\x1a\n"):
        return mime
    if mime == "image/jpeg" and head.startswith(b"\xff\xd8\xff"):
        return mime
    if mime == "image/svg+xml" and head.lstrip().startswith((b"<svg", b"<?xml")):
        return mime
    return None


@dataclass(frozen=True)
class Embedded:
    """An image ready for a data URI: bytes, MIME type, pixel size and how it was made."""

    data: bytes
    mime: str
    width: int
    height: int
    how: str  # e.g. "webp lossy q85, 1400 px (from 2105 px png)"


def encode_figure(path: Path, mime: str, max_width: int) -> Embedded:
    """`path` (png/jpeg, already checked by content) scaled to <= max_width px and re-encoded, or the original
    bytes when that is smaller (SVGs are always kept as they are)."""
    raw = path.read_bytes()
    if mime == "image/svg+xml":
        return Embedded(raw, mime, 0, 0, "svg as written")
    from PIL import Image

    try:
        im = Image.open(io.BytesIO(raw))
        im.load()
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot be decoded ({type(e).__name__})") from None
    with im:
        w0, h0 = im.size
        im = im.convert("RGBA") if im.mode in ("RGBA", "LA", "P") else im.convert("RGB")
        if w0 > max_width:
            im = im.resize((max_width, max(1, round(h0 * max_width / w0))), Image.Resampling.LANCZOS)
        few = im.getcolors(maxcolors=FEW_COLOURS) is not None
        buf = io.BytesIO()
        if few:
            im.save(buf, format="WEBP", lossless=True, quality=80, method=4)
        else:
            im.save(buf, format="WEBP", quality=QUALITY, method=4)
        w, h = im.size
    kind = "webp lossless" if few else f"webp lossy q{QUALITY}"
    if len(buf.getvalue()) >= len(raw) and w == w0:
        return Embedded(raw, mime, w0, h0, f"{mime.split('/')[1]} as written")
    return Embedded(buf.getvalue(), "image/webp", w, h, f"{kind}, {w} px (from {w0} px {mime.split('/')[1]})")


class FigureSet:
    """The figures of one page, each embedded once: a figure met again (a hero figure in its analysis'
    section) becomes a link to the first copy. Keeps a tally of the embedded bytes."""

    def __init__(self) -> None:
        self.seen: dict[Path, tuple[str, str]] = {}
        self.bytes = 0
        self.original_bytes = 0

    def html(self, png: Path, caption: Any, fid: str, *, hero: bool = False) -> str:
        """A <figure> with the image as a data URI (only regular png/jpeg/svg files, checked by content)."""
        esc = _esc
        caption = "" if caption is None else str(caption)
        if not png.is_file():
            return f'<p class="warn">missing figure {esc(png.name)}</p>'
        key = png.resolve()
        if key in self.seen:
            first, cap = self.seen[key]
            return (f'<p class="dim seen">Figure shown in the overview: <a href="#{esc(first)}">'
                    f"{esc(_short(cap or png.stem))}</a></p>")
        mime = image_mime(png)
        if mime is None:
            return f'<p class="warn">figure {esc(png.name)} is not a PNG, JPEG or SVG image; not embedded</p>'
        try:
            e = encode_figure(png, mime, HERO_WIDTH if hero else FIGURE_WIDTH)
        except ValueError as err:
            return f'<p class="warn">figure {esc(png.name)} {esc(err)}; not embedded</p>'
        self.seen[key] = (fid, caption)
        self.bytes += len(e.data)
        self.original_bytes += png.stat().st_size
        uri = f"data:{e.mime};base64,{base64.b64encode(e.data).decode('ascii')}"
        size = f' width="{e.width}" height="{e.height}"' if e.width else ""
        cls = ' class="hero"' if hero else ""
        return (f'<figure id="{esc(fid)}"{cls}><img src="{uri}"{size} alt="{esc(caption or png.stem)}" '
                f'loading="eager"><figcaption>{esc(caption)}</figcaption></figure>')


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _short(text: str, n: int = 90) -> str:
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"
