"""Cityscapes-VPS (val) in its published layout (SPEC 3.1): 30-frame clips, frames 5, 10, ..., 30 annotated.

    cityscapes_vps/panoptic_gt_val_city_vps.json
    cityscapes_vps/val/img_all/<city>_<seq>_<frame>_leftImg8bit.png
    cityscapes_vps/val/panoptic_video/<vid>_<gidx>_<city>_<seq>_<frame>_<suffix>.png
"""

from __future__ import annotations

import re
from pathlib import Path

from xinc.data.categories import CITYSCAPES_CATEGORIES
from xinc.data.datasets import DatasetReader, register_dataset
from xinc.data.panoptic import ClipLayout, categories_from, load_json, segments_info
from xinc.errors import XincError

NAME = "cityscapes-vps"
JSON = "panoptic_gt_val_city_vps.json"
CLIP_LEN = 30
FIRST_ANNOTATED = 4  # 0-based clip index of the first annotated frame (frames 5, 10, ..., 30)
NATIVE_SIZE = (1024, 2048)
_CITY_STEM = re.compile(r"^(?P<vid>\d{4})_(?P<gidx>\d{4})_(?P<city>.+)_(?P<seq>\d{6})_(?P<frame>\d{6})")


def layout(root: Path, video: str) -> ClipLayout:
    """The frame files, annotation files and segment tables of clip `video` (e.g. '0005')."""
    json_path = root / JSON
    data = load_json(json_path, ("images", "annotations", "categories"), "Cityscapes-VPS")
    cats = categories_from(data, json_path)
    video = f"{int(video):04d}" if str(video).isdigit() else str(video)
    anns = []
    for ann in data["annotations"]:
        name = str(ann.get("file_name", ann.get("image_id", "")))
        m = _CITY_STEM.match(name)
        if m and m["vid"] == video:
            anns.append((int(m["frame"]), m, ann))
    if not anns:
        vids = sorted({m["vid"] for a in data["annotations"] if (m := _CITY_STEM.match(str(a.get("file_name", ""))))})
        raise XincError(f"{json_path}: no annotations for video {video!r}; videos here: "
                        f"{', '.join(vids[:12]) or 'none'}{' ...' if len(vids) > 12 else ''}")  # fmt: skip
    anns.sort(key=lambda a: a[0])
    city, seq = anns[0][1]["city"], anns[0][1]["seq"]
    f0 = anns[0][0] - FIRST_ANNOTATED
    img_dir = root / "val" / "img_all"
    if not img_dir.is_dir():
        raise XincError(f"{img_dir}: folder not found; put all 30 frames of every clip there (SPEC 3.1)")
    images = []
    index = None
    for j in range(CLIP_LEN):
        p = img_dir / f"{city}_{seq}_{f0 + j:06d}_leftImg8bit.png"
        if not p.is_file():  # other releases prefix '<vid>_<gidx>_' or use another suffix: look the frame up
            index = _frame_index(img_dir) if index is None else index
            p = index.get((city, seq, f0 + j))
            if p is None:
                break
        images.append(p)
    labels, infos = {}, {}
    for frame, m, ann in anns:
        j = frame - f0
        if m["city"] != city or m["seq"] != seq:
            raise XincError(f"{json_path}: video {video} mixes sequences {city}_{seq} and {m['city']}_{m['seq']}")
        if j >= len(images):
            missing = img_dir / f"{city}_{seq}_{f0 + len(images):06d}_leftImg8bit.png"
            raise XincError(f"{missing}: image file not found; clip frame {len(images)} of video {video} is missing")
        labels[j] = root / "val" / "panoptic_video" / str(ann["file_name"])
        infos[j] = segments_info(ann, json_path, cats)
    return ClipLayout(video, images, labels, infos, cats)


_IMG_ALL = re.compile(r"^(?:\d{4}_\d{4}_)?(?P<city>[a-z]+)_(?P<seq>\d{6})_(?P<frame>\d{6})_\w+\.png$")


def _frame_index(img_dir: Path) -> dict[tuple[str, str, int], Path]:
    """(city, seq, frame) -> file of an img_all folder, whatever the prefix/suffix of its names."""
    out = {}
    for p in sorted(img_dir.iterdir()):
        m = _IMG_ALL.match(p.name)
        if m:
            out.setdefault((m["city"], m["seq"], int(m["frame"])), p)
    return out


def list_videos(root: Path) -> list[str]:
    """The clip ids ('0001', '0005', ...) of the annotations JSON."""
    data = load_json(root / JSON, ("annotations",), "Cityscapes-VPS")
    return sorted({m["vid"] for a in data["annotations"] if (m := _CITY_STEM.match(str(a.get("file_name", ""))))})


READER = register_dataset(DatasetReader(
    name=NAME, title="Cityscapes-VPS (val)", layout=layout, list_videos=list_videos,
    first_annotated=FIRST_ANNOTATED, native_size=NATIVE_SIZE, categories=CITYSCAPES_CATEGORIES,
    clip_length=CLIP_LEN))
