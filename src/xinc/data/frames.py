"""Frames from images, folders and video files, with the one documented crop/resize pipeline.

Resampling (SPEC 3.3): images use torch bicubic interpolation, align_corners=False, no
antialiasing (the original HNeRV/XINC pipeline; reproduces the reference NeRV exactly). Masks
use 'nearest-exact' on the same pixel-centre grid, so labels and pixels stay aligned.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from xinc.errors import XincError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif")


def image_to_rgb(im: Image.Image, path: Path) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] from any supported PIL mode: 8-bit modes via RGB (alpha dropped),
    16-bit grayscale (I;16*, and I holding 16-bit values) scaled by 1/65535; float or other modes refused."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im).astype(np.float64)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise XincError(f"{path}: {mode} image with values outside 0..65535 ; save it as 8- or 16-bit PNG")
        gray = (arr / 65535.0).astype(np.float32)
        return np.repeat(gray[..., None], 3, axis=-1)
    if mode in ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "La", "RGBa"):
        return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    raise XincError(f"{path}: image mode {mode} is not supported (float or unusual pixels) ; save it as an 8- or "
                    "16-bit PNG")


def read_image(path: str | Path) -> torch.Tensor:
    """RGB image as float32 (3, H, W) in [0, 1] (16-bit grayscale scaled, not clipped)."""
    path = Path(path)
    if not path.is_file():
        raise XincError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            arr = image_to_rgb(im, path)
    except Image.DecompressionBombError as e:
        raise XincError(f"{path}: image is too large to decode safely ({e}) ; resize it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise XincError(f"{path}: cannot read as an image ({e.__class__.__name__}: {e}) ; give a PNG or JPEG, or "
                        "remove the file from the folder") from None
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header, with one-line errors for unreadable or oversized images."""
    try:
        with Image.open(path) as im:
            return im.size
    except Image.DecompressionBombError as e:
        raise XincError(f"{path}: image is too large to decode safely ({e}) ; resize it first") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise XincError(f"{path}: cannot read as an image ({e.__class__.__name__}) ; remove it from the folder or "
                        "replace it") from None


def list_frame_files(folder: str | Path) -> list[Path]:
    """Image files of a folder in sorted (natural for zero-padded names) order."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise XincError(f"{folder}: folder holds no image frames ({', '.join(IMAGE_SUFFIXES)})")
    return files


def read_video(path: str | Path, max_frames: int | None = None) -> torch.Tensor:
    """Decode a video file with PyAV into float32 (T, 3, H, W) in [0, 1]."""
    import av

    path = Path(path)
    frames = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise XincError(f"{path}: the file has no video stream ; give a video file or a frame folder")
            for frame in container.decode(video=0):
                frames.append(torch.from_numpy(frame.to_ndarray(format="rgb24")))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as e:
        raise XincError(f"{path}: cannot decode as a video ({e}); give an mp4/mkv/... file or a frame folder") from None
    if not frames:
        raise XincError(f"{path}: the video holds no frames")
    return torch.stack(frames).permute(0, 3, 1, 2).float() / 255.0


def center_crop(x: torch.Tensor, crop: tuple[int, int] | None) -> torch.Tensor:
    """Centre crop (..., H, W) to crop=(h, w); top = round((H-h)/2), left = round((W-w)/2)."""
    if crop is None:
        return x
    h, w = crop
    H, W = x.shape[-2:]
    if h > H or w > W:
        raise XincError(f"crop {h}x{w} is larger than the frames ({H}x{W}); choose a smaller --crop")
    top, left = round((H - h) / 2), round((W - w) / 2)
    return x[..., top : top + h, left : left + w]


def resize_frames(x: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """Resize (T, 3, H, W) float frames with the project's one image filter (bicubic, no antialias)."""
    if size is None or tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bicubic", align_corners=False)


def resize_masks(m: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """Resize integer label maps (..., H, W) by nearest neighbour on the image filter's pixel-centre grid."""
    if size is None or tuple(m.shape[-2:]) == tuple(size):
        return m
    lead = m.shape[:-2]
    flat = m.reshape(-1, 1, *m.shape[-2:]).to(torch.float64)  # float64 keeps ids up to 2^53 exact
    out = F.interpolate(flat, size=tuple(size), mode="nearest-exact")
    return out.round().to(m.dtype).reshape(*lead, *size)


def preprocess(
    frames: torch.Tensor, crop: tuple[int, int] | None = None, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Centre crop then resize (T, 3, H, W) frames (SPEC 1.2 / 3.3)."""
    return resize_frames(center_crop(frames, crop), size)


def load_frames(
    src: str | Path,
    crop: tuple[int, int] | None = None,
    size: tuple[int, int] | None = None,
    frames: Sequence[int] | int | None = None,
) -> torch.Tensor:
    """Frames of an image, a folder of images or a video file as (T, 3, h, w) float32 in [0, 1].

    `frames` is either a count (the first N) or a list of 0-based indices.
    """
    src = Path(src)
    if not src.exists():
        raise XincError(f"{src}: no such file or folder")
    if src.is_dir():
        files = list_frame_files(src)
        idx = _select(len(files), frames, src)
        x = torch.stack([read_image(files[i]) for i in idx]) if _same_size(files, idx) else None
        if x is None:
            raise XincError(f"{src}: frames have different sizes; all frames of a video must match")
    elif src.suffix.lower() in VIDEO_SUFFIXES:
        limit = frames if isinstance(frames, int) else (max(frames) + 1 if frames else None)
        video = read_video(src, limit)
        idx = _select(video.shape[0], frames, src)
        x = video[idx]
    else:
        x = read_image(src)[None]
        _select(1, frames, src)
    return preprocess(x, crop, size)


def _select(n: int, frames: Sequence[int] | int | None, src: Path) -> list[int]:
    if frames is None:
        return list(range(n))
    if isinstance(frames, int):
        if frames < 1:
            raise XincError(f"--frames {frames}: must be at least 1")
        if frames > n:
            raise XincError(f"{src}: asked for {frames} frames but only {n} exist")
        return list(range(frames))
    bad = [i for i in frames if i < 0 or i >= n]
    if bad:
        raise XincError(f"{src}: frame index {bad[0]} is outside 0..{n - 1}")
    return list(frames)


def _same_size(files: list[Path], idx: list[int]) -> bool:
    return len({image_size(files[i]) for i in idx}) == 1
