"""Video files through PyAV (FFmpeg): H.264 MP4 (yuv420p, plays in browsers and common players), animated
WebP or GIF for slides. Frames are streamed to the encoder one by one."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import av
import numpy as np

from xinc.errors import XincError

FORMATS = {  # suffix -> (codec, pixel format, muxer options)
    "mp4": ("libx264", "yuv420p", {"movflags": "+faststart"}),
    "webp": ("libwebp_anim", "yuv420p", {"loop": "0"}),
    "gif": ("gif", "rgb8", {"loop": "0"}),
}


class VideoWriter:
    """Write (H, W, 3) uint8 frames to `path` (format from its suffix) atomically: the file appears only when
    close() succeeds. H and W must be even for mp4/webp (yuv420p)."""

    def __init__(self, path: str | Path, fps: float = 10.0, crf: int = 20) -> None:
        self.path = Path(path)
        fmt = self.path.suffix.lstrip(".").lower()
        if fmt not in FORMATS:
            raise XincError(f"{self.path}: unknown video format {fmt!r}; use one of {', '.join(FORMATS)}")
        self.codec, self.pix_fmt, self.options = FORMATS[fmt]
        self.fps, self.crf = fps, crf
        self.tmp = self.path.with_name(f".{self.path.stem}.tmp{self.path.suffix}")
        self.container = None
        self.stream = None
        self.frames = 0

    def _open(self, h: int, w: int) -> None:
        if self.pix_fmt == "yuv420p" and (h % 2 or w % 2):
            raise XincError(f"{self.path}: frame size {w}x{h} must be even for {self.codec}")
        self.container = av.open(str(self.tmp), "w", format=self.path.suffix.lstrip(".").lower(),
                                 options=self.options)
        from fractions import Fraction

        self.stream = self.container.add_stream(self.codec, rate=Fraction(self.fps).limit_denominator(1000))
        self.stream.width, self.stream.height, self.stream.pix_fmt = w, h, self.pix_fmt
        if self.codec == "libx264":
            self.stream.options = {"crf": str(self.crf), "preset": "medium"}
        elif self.codec == "libwebp_anim":
            self.stream.options = {"quality": "80"}

    def write(self, rgb: np.ndarray) -> None:
        """Append one frame."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if self.container is None:
            self._open(*rgb.shape[:2])
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> Path:
        """Flush the encoder and move the finished file into place."""
        if self.container is None:
            raise XincError(f"{self.path}: no frames were written")
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the unfinished file."""
        if self.container is not None:
            with contextlib.suppress(Exception):
                self.container.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


class Writers:
    """Several VideoWriters fed the same frames (one video in mp4 and, e.g., webp for slides)."""

    def __init__(self, paths: list[Path], fps: float) -> None:
        self.writers = [VideoWriter(p, fps) for p in paths]

    def write(self, rgb: np.ndarray) -> None:
        for w in self.writers:
            w.write(rgb)

    def __enter__(self) -> Writers:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            for w in self.writers:
                w.abort()
            return
        for w in self.writers:
            w.close()
