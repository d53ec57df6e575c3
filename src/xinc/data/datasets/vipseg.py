"""VIPSeg (720P) in its published layout (SPEC 3.2): every frame annotated, 124 categories.

    VIPSeg_720P/panoptic_gt_VIPSeg.json
    VIPSeg_720P/images/<vid>/<frame:8>.jpg
    VIPSeg_720P/panomasksRGB/<vid>/<frame:8>.png
"""

from __future__ import annotations

from pathlib import Path

from xinc.data.categories import VIPSEG_CATEGORIES
from xinc.data.datasets import DatasetReader, register_dataset
from xinc.data.panoptic import ClipLayout, categories_from, load_json, segments_info
from xinc.errors import XincError

NAME = "vipseg"
JSON = "panoptic_gt_VIPSeg.json"
FIRST_ANNOTATED = 0
NATIVE_SIZE = (720, 1280)


def layout(root: Path, video: str) -> ClipLayout:
    """The frame files, annotation files and segment tables of video `video` (a VIPSeg video id)."""
    json_path = root / JSON
    data = load_json(json_path, ("videos", "annotations", "categories"), "VIPSeg")
    cats = categories_from(data, json_path)
    vid_entry = next((v for v in data["videos"] if str(v.get("video_id")) == str(video)), None)
    ann_entry = next((a for a in data["annotations"] if str(a.get("video_id")) == str(video)), None)
    if vid_entry is None or ann_entry is None:
        vids = [str(v.get("video_id")) for v in data["videos"]]
        raise XincError(f"{json_path}: no video {video!r}; videos here: {', '.join(vids[:12]) or 'none'}"
                        f"{' ...' if len(vids) > 12 else ''}")  # fmt: skip
    frames = sorted(vid_entry.get("images", []), key=lambda im: Path(str(im["file_name"])).stem)
    if not frames:
        raise XincError(f"{json_path}: video {video!r} lists no images")
    images = [root / "images" / str(video) / Path(str(im["file_name"])).name for im in frames]
    index = {p.stem: j for j, p in enumerate(images)}
    labels, infos = {}, {}
    for ann in ann_entry.get("annotations", []):
        stem = Path(str(ann.get("file_name", ann.get("image_id", "")))).stem
        if stem not in index:
            raise XincError(f"{json_path}: annotation {stem!r} of video {video} has no image in its images list")
        j = index[stem]
        labels[j] = root / "panomasksRGB" / str(video) / f"{stem}.png"
        infos[j] = segments_info(ann, json_path, cats)
    return ClipLayout(str(video), images, labels, infos, cats)


def list_videos(root: Path) -> list[str]:
    """The video ids of the annotations JSON."""
    data = load_json(root / JSON, ("videos",), "VIPSeg")
    return [str(v.get("video_id")) for v in data["videos"]]


READER = register_dataset(DatasetReader(
    name=NAME, title="VIPSeg (720P)", layout=layout, list_videos=list_videos, first_annotated=FIRST_ANNOTATED,
    native_size=NATIVE_SIZE, categories=VIPSEG_CATEGORIES))
