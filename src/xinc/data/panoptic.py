"""Panoptic video clips of any registered dataset (xinc.data.datasets: Cityscapes-VPS, VIPSeg) (SPEC 3.1-3.3).

A clip holds all T frames (what a NeRV is trained on; model frame j is queried at t = j / T), the
annotated frame indices, per-frame segment-id maps (track ids, 0 = void) resampled on the image grid,
segment tables and the category table. Segments lost to the crop or to resizing are listed in
`clip.vanished`, never silently dropped.

Crop (both datasets): `crop=None` takes the largest centred crop with the aspect of `size`, which is
the paper's setting for both: Cityscapes 1024x2048 -> no crop, VIPSeg 720x1280 -> 640x1280.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

from xinc.data.categories import Category
from xinc.data.frames import center_crop, load_frames, preprocess, read_image, resize_masks
from xinc.errors import XincError
from xinc.utils import read_json

__all__ = [
    "Category",
    "Segment",
    "Vanished",
    "PanopticClip",
    "ClipLayout",
    "load_panoptic_clip",
    "load_panoptic_frame",
    "load_video_clip",
    "list_videos",
    "rgb_to_id",
    "id_to_rgb",
    "auto_crop",
    "segment_table",
]

@dataclass(frozen=True)
class Segment:
    """One segment of one frame: track id, category, and its area (pixels) and bbox (x, y, w, h) at the clip size."""

    id: int
    category_id: int
    name: str
    isthing: bool
    area: int
    bbox: tuple[int, int, int, int]


@dataclass(frozen=True)
class Vanished:
    """A labelled segment that is absent after preprocessing: reason 'crop' or 'resize'."""

    frame: int
    id: int
    category_id: int
    name: str
    native_area: int
    reason: str


@dataclass
class PanopticClip:
    """All frames of a clip plus panoptic labels of its annotated frames, at the analysis resolution."""

    frames: torch.Tensor  # (T, 3, H, W) float32 in [0, 1]
    annotated: list[int]  # clip indices j with labels, ascending
    ids: dict[int, torch.Tensor]  # j -> (H, W) int64 segment (track) ids, 0 = void/unlabelled
    segments: dict[int, list[Segment]]  # j -> segments present in frame j (sorted by id)
    categories: dict[int, Category]
    vanished: list[Vanished]
    dataset: str
    video: str
    files: list[str] = field(default_factory=list)  # image file of every clip frame
    label_files: dict[int, str] = field(default_factory=dict)  # j -> panoptic PNG
    native_size: tuple[int, int] | None = None
    crop: tuple[int, int] | None = None
    size: tuple[int, int] | None = None

    @property
    def num_frames(self) -> int:
        """T, the number of frames of the clip (what a NeRV of this clip is trained on)."""
        return int(self.frames.shape[0])

    def time(self, j: int) -> float:
        """Model time code of clip frame j: t = j / T (SPEC 3.1; never the original's k / 6)."""
        return j / self.num_frames

    @property
    def times(self) -> list[float]:
        """Time codes of the annotated frames."""
        return [self.time(j) for j in self.annotated]

    def mask(self, j: int, seg_id: int) -> torch.Tensor:
        """Boolean (H, W) mask of segment `seg_id` in annotated frame j."""
        return self._ids(j) == int(seg_id)

    def one_hot(self, j: int, seg_ids: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids (S,), masks (S, H, W) bool) for the segments of frame j (default: all present), vectorised."""
        ids_map = self._ids(j)
        sel = torch.tensor([s.id for s in self.segments[j]] if seg_ids is None else list(seg_ids), dtype=torch.int64)
        return sel, ids_map[None] == sel[:, None, None]

    def semantic(self, j: int) -> torch.Tensor:
        """(H, W) int64 category map of frame j (-1 = void)."""
        ids_map = self._ids(j)
        segs = self.segments[j]
        if not segs:
            return torch.full_like(ids_map, -1)
        keys = torch.tensor([s.id for s in segs], dtype=torch.int64)
        cats = torch.tensor([s.category_id for s in segs], dtype=torch.int64)
        pos = torch.searchsorted(keys, ids_map.clamp(min=0)).clamp(max=len(keys) - 1)
        return torch.where(keys[pos] == ids_map, cats[pos], torch.full_like(ids_map, -1))

    def track_ids(self) -> list[int]:
        """Every segment id that appears in any annotated frame, ascending."""
        return sorted({s.id for j in self.annotated for s in self.segments[j]})

    def segment(self, j: int, seg_id: int) -> Segment | None:
        """The Segment record of `seg_id` in frame j, or None when it is absent there."""
        return next((s for s in self.segments[j] if s.id == seg_id), None)

    def summary(self) -> dict:
        """Plain-JSON description for run configs and reports."""
        return {
            "dataset": self.dataset,
            "video": self.video,
            "num_frames": self.num_frames,
            "annotated": list(self.annotated),
            "times": self.times,
            "native_size": self.native_size,
            "crop": self.crop,
            "size": self.size,
            "num_categories": len(self.categories),
            "num_tracks": len(self.track_ids()),
            "num_vanished": len(self.vanished),
            "vanished": [vars(v) for v in self.vanished],
        }

    def _ids(self, j: int) -> torch.Tensor:
        if j not in self.ids:
            raise XincError(f"{self.dataset} video {self.video}: frame {j} has no panoptic labels "
                            f"(annotated frames: {self.annotated})")  # fmt: skip
        return self.ids[j]


# ----------------------------------------------------------------------------------------------- helpers


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """Panoptic id map of an RGB panoptic PNG array (H, W, 3): id = R + 256 G + 256^2 B (int64)."""
    rgb = np.asarray(rgb)
    r, g, b = (rgb[..., k].astype(np.int64) for k in range(3))
    return r | (g << 8) | (b << 16)


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """Inverse of rgb_to_id: (H, W) ids -> (H, W, 3) uint8."""
    ids = np.asarray(ids, dtype=np.int64)
    return np.stack([ids % 256, (ids // 256) % 256, (ids // 65536) % 256], axis=-1).astype(np.uint8)


def segment_table(ids: np.ndarray, info: dict[int, int], categories: dict[int, Category]) -> list[Segment]:
    """Segments of an id map (0 = void): area and bbox from the map, category from `info` {id: category_id}."""
    uniq, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    boxes = ndimage.find_objects(inverse.reshape(ids.shape) + 1)
    out = []
    for k, sid in enumerate(uniq.tolist()):
        if sid == 0:
            continue
        ys, xs = boxes[k]
        cat = categories[info[sid]]
        bbox = (int(xs.start), int(ys.start), int(xs.stop - xs.start), int(ys.stop - ys.start))
        out.append(Segment(int(sid), cat.id, cat.name, cat.isthing, int(counts[k]), bbox))
    return out


def auto_crop(native: tuple[int, int], size: tuple[int, int] | None) -> tuple[int, int] | None:
    """Largest centred crop of `native` with the aspect of `size` (None when no crop is needed)."""
    if size is None:
        return None
    H, W = native
    h, w = size
    if H * w == W * h:
        return None
    if H * w > W * h:  # too tall: keep the width
        return (round(W * h / w), W)
    return (H, round(H * w / h))


@functools.lru_cache(maxsize=4)
def _json_cached(path: str, mtime: float, size: int) -> dict:
    return read_json(path)


def load_json(path: Path, keys: Sequence[str], what: str) -> dict:
    if not path.is_file():
        raise XincError(f"{path}: file not found; put the {what} annotations there (see the README, section Data)")
    st = path.stat()
    data = _json_cached(str(path), st.st_mtime, st.st_size)
    if not isinstance(data, dict):
        raise XincError(f"{path}: expected a JSON object with {', '.join(keys)}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise XincError(f"{path}: missing key {missing[0]!r}; is this the {what} panoptic JSON?")
    return data


def categories_from(data: dict, path: Path) -> dict[int, Category]:
    cats = {}
    for c in data["categories"]:
        try:
            color = tuple(int(v) for v in c["color"]) if c.get("color") is not None else None
            cats[int(c["id"])] = Category(int(c["id"]), str(c["name"]), bool(c.get("isthing", 0)), color)
        except (KeyError, TypeError, ValueError):
            raise XincError(f"{path}: malformed category entry {c!r}; need id, name, isthing") from None
    if not cats:
        raise XincError(f"{path}: the category list is empty")
    return cats


def _read_panoptic_png(path: Path, native: tuple[int, int]) -> np.ndarray:
    if not path.is_file():
        raise XincError(f"{path}: panoptic PNG not found; the dataset is incomplete")
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # libpng: faster than PIL on large label maps
    if arr is not None and arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[..., ::-1]  # BGR -> RGB
    else:  # palette, gray, alpha or 16-bit files: let PIL convert them to 8-bit RGB
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
            raise XincError(f"{path}: cannot read the panoptic PNG ({e.__class__.__name__})") from None
    if arr.shape[:2] != tuple(native):
        raise XincError(f"{path}: mask is {arr.shape[0]}x{arr.shape[1]} but its frame is {native[0]}x{native[1]}; "
                        "masks must match their images")  # fmt: skip
    return rgb_to_id(arr)


def segments_info(ann: dict, json_path: Path, categories: dict[int, Category]) -> dict[int, int]:
    info = {}
    for s in ann.get("segments_info", []):
        try:
            sid, cid = int(s["id"]), int(s["category_id"])
        except (KeyError, TypeError, ValueError):
            raise XincError(f"{json_path}: malformed segments_info entry {s!r} in {ann.get('file_name')}") from None
        if cid not in categories:
            raise XincError(f"{json_path}: segment {sid} of {ann.get('file_name')} has unknown category_id {cid}; "
                            f"known ids are {min(categories)}..{max(categories)}")  # fmt: skip
        info[sid] = cid
    return info


def _read_rgb(path: Path) -> torch.Tensor:
    """xinc.data.frames.read_image, with libpng for plain 8-bit RGB PNGs (byte-identical, ~2x faster)."""
    if path.suffix.lower() == ".png" and path.is_file():
        arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if arr is not None and arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3:
            return torch.from_numpy(np.ascontiguousarray(arr[..., ::-1])).permute(2, 0, 1).float() / 255.0
    return read_image(path)


def _image_size(path: Path) -> tuple[int, int]:
    if not path.is_file():
        raise XincError(f"{path}: image file not found; the dataset is incomplete")
    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise XincError(f"{path}: cannot read as an image ({e.__class__.__name__})") from None


# ----------------------------------------------------------------------------------------------- layouts


@dataclass
class ClipLayout:
    """Everything needed to load one clip: frame files, label files and segment infos per annotated j."""

    video: str
    images: list[Path]
    labels: dict[int, Path]
    infos: dict[int, dict[int, int]]
    categories: dict[int, Category]


def _layout(dataset: str, root: str | Path, video: str) -> ClipLayout:
    from xinc.data.datasets import get_dataset

    reader = get_dataset(dataset)
    root = Path(root)
    if not root.is_dir():
        raise XincError(f"{root}: dataset folder not found ; see docs/reference/data.md for the {dataset} layout")
    return reader.layout(root, str(video))


def list_videos(dataset: str, root: str | Path) -> list[str]:
    """Video ids of a dataset folder (Cityscapes-VPS: '0005', ...; VIPSeg: folder names under images/)."""
    from xinc.data.datasets import get_dataset

    return get_dataset(dataset).list_videos(Path(root))


# ----------------------------------------------------------------------------------------------- loading


def _labels_at(
    lay: ClipLayout, j: int, native: tuple[int, int], crop, size
) -> tuple[torch.Tensor, list[Segment], list[Vanished]]:
    """Decode, validate, crop and resample the labels of frame j; return ids, segments, vanished."""
    path = lay.labels[j]
    ids = _read_panoptic_png(path, native)
    info = lay.infos[j]
    present, counts = np.unique(ids, return_counts=True)
    unknown = [int(v) for v in present if v != 0 and int(v) not in info]
    if unknown:
        raise XincError(f"{path}: segment id {unknown[0]} is not in the JSON's segments_info for this frame; "
                        "the PNG and the JSON do not belong together")  # fmt: skip
    t = center_crop(torch.from_numpy(ids), crop)
    out = resize_masks(t, size)
    out_np = out.numpy()
    segments = segment_table(out_np, info, lay.categories)
    kept = {s.id for s in segments}
    cropped = t.numpy()
    vanished = []
    for sid, n in zip(present.tolist(), counts.tolist()):
        if sid == 0 or sid in kept:
            continue
        reason = "resize" if crop is None or bool((cropped == sid).any()) else "crop"
        c = lay.categories[info[sid]]
        vanished.append(Vanished(j, sid, c.id, c.name, int(n), reason))
    return out.to(torch.int64).contiguous(), segments, vanished


def _resolve_crop(crop, native: tuple[int, int], size) -> tuple[int, int] | None:
    if crop is None:
        return auto_crop(native, size)
    if crop is False or (isinstance(crop, str) and crop.lower() in ("none", "no", "off")):
        return None
    return (int(crop[0]), int(crop[1]))


def load_panoptic_clip(
    dataset: str,
    root: str | Path,
    video: str,
    size: tuple[int, int] | None = (128, 256),
    crop: tuple[int, int] | None | bool | str = None,
) -> PanopticClip:
    """Load every frame of a clip and the panoptic labels of its annotated frames (SPEC 3.1-3.3).

    crop=None: the paper's crop (largest centred crop with the aspect of `size`); crop=False/'none':
    no crop; crop=(h, w): that centred crop. size=None keeps the (cropped) native resolution.
    """
    return _load(_layout(dataset, root, video), dataset, None, size, crop)


def load_panoptic_frame(
    dataset: str,
    root: str | Path,
    video: str,
    frame: int,
    size: tuple[int, int] | None = (128, 256),
    crop: tuple[int, int] | None | bool | str = None,
) -> PanopticClip:
    """One annotated frame (for an FFN) as a one-frame PanopticClip whose frame index is 0.

    `frame` is the clip index j (Cityscapes-VPS: 4, 9, ..., 29); `clip.video` records it as '<video>@<j>'.
    """
    lay = _layout(dataset, root, video)
    if frame not in lay.labels:
        raise XincError(f"{dataset} video {lay.video}: frame {frame} is not annotated; "
                        f"annotated frames: {sorted(lay.labels)}")  # fmt: skip
    return _load(lay, dataset, [frame], size, crop)


def _load(lay: ClipLayout, dataset: str, only: list[int] | None, size, crop) -> PanopticClip:
    which = list(range(len(lay.images))) if only is None else only
    native = _image_size(lay.images[which[0]])
    crop_hw = _resolve_crop(crop, native, size)
    size_t = tuple(size) if size is not None else None
    frames = []
    for j in which:
        img = _read_rgb(lay.images[j])
        if tuple(img.shape[-2:]) != native:
            raise XincError(f"{lay.images[j]}: frame is {img.shape[1]}x{img.shape[2]} but the clip's first frame is "
                            f"{native[0]}x{native[1]}; all frames of a clip must match")  # fmt: skip
        frames.append(preprocess(img[None], crop_hw, size_t)[0])
    ids, segments, vanished = {}, {}, []
    for new_j, j in enumerate(which):
        if j in lay.labels:
            ids[new_j], segments[new_j], lost = _labels_at(lay, j, native, crop_hw, size_t)
            vanished += [Vanished(new_j, v.id, v.category_id, v.name, v.native_area, v.reason) for v in lost]
    video = lay.video if only is None else f"{lay.video}@{only[0]}"
    x = torch.stack(frames)
    out_size = tuple(x.shape[-2:])
    return PanopticClip(
        frames=x,
        annotated=sorted(ids),
        ids=ids,
        segments=segments,
        categories=lay.categories,
        vanished=vanished,
        dataset=dataset,
        video=video,
        files=[str(lay.images[j]) for j in which],
        label_files={new_j: str(lay.labels[j]) for new_j, j in enumerate(which) if j in lay.labels},
        native_size=native,
        crop=crop_hw,
        size=out_size,
    )


def load_video_clip(
    src: str | Path,
    size: tuple[int, int] | None = (128, 256),
    crop: tuple[int, int] | None | bool | str = None,
    frames: Sequence[int] | int | None = None,
) -> PanopticClip:
    """Any folder of frames or video file as a PanopticClip without labels (same crop/resize pipeline)."""
    src = Path(src)
    probe = load_frames(src, frames=[0] if frames is None or isinstance(frames, int) else [frames[0]])
    native = tuple(probe.shape[-2:])
    crop_hw = _resolve_crop(crop, native, size)
    x = load_frames(src, crop_hw, tuple(size) if size is not None else None, frames)
    return PanopticClip(x, [], {}, {}, {}, [], "frames", src.name, [str(src)], {}, native, crop_hw,
                        tuple(x.shape[-2:]))  # fmt: skip
