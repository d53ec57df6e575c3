"""Panoptic readers against fixtures written here byte by byte from the published encodings (SPEC 3.1-3.2), not
by our synthetic generator: PNGs are assembled from raw chunks (zlib + CRC) and panoptic ids are spelled out as
R, G, B bytes with id = R + 256 G + 256^2 B. Also: the generator's own files decoded by the published rules."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xinc.data.panoptic import load_panoptic_clip, load_panoptic_frame
from xinc.errors import XincError


def png_bytes(arr: np.ndarray) -> bytes:
    """A PNG file from raw bytes: (H, W, 3) uint8 -> 8-bit RGB; (H, W) uint16 -> 16-bit grey (big-endian)."""
    if arr.ndim == 3:
        depth, ctype, rows = 8, 2, arr.astype(np.uint8)
    else:
        depth, ctype, rows = 16, 0, arr.astype(">u2")
    H, W = arr.shape[:2]
    raw = b"".join(b"\x00" + rows[y].tobytes() for y in range(H))  # filter type 0 on every scanline

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", W, H, depth, ctype, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def rgb_of(ids: np.ndarray) -> np.ndarray:
    """The published encoding spelled out: R = id mod 256, G = (id // 256) mod 256, B = id // 256^2."""
    out = np.zeros((*ids.shape, 3), np.uint8)
    for (y, x), v in np.ndenumerate(ids):
        out[y, x] = (v % 256, (v // 256) % 256, v // 65536)
    return out


CAR, ROAD = 1 + 2 * 256 + 3 * 65536, 5 + 9 * 65536  # 197121 (R1 G2 B3) and 589829 (R5 G0 B9): R != B
IDS = np.array([[0, CAR, CAR, ROAD, ROAD, ROAD],
                [CAR, CAR, CAR, ROAD, ROAD, ROAD],
                [0, 0, ROAD, ROAD, ROAD, 0],
                [0, 0, ROAD, ROAD, ROAD, 0]], np.int64)
CATEGORIES = [{"id": 0, "name": "road", "isthing": 0, "color": [128, 64, 128]},
              {"id": 13, "name": "car", "isthing": 1, "color": [0, 0, 142]}]


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def frame_pixels(j: int) -> np.ndarray:
    px = np.zeros((4, 6, 3), np.uint8)
    px[..., 0], px[..., 1], px[..., 2] = 8 * j, 3, 255 - j  # frame j is recognisable by its red byte
    return px


def cityscapes(root: Path, segs=None, ids=IDS) -> Path:
    """Clip 0001 of sequence frankfurt_000123, frames 000100..000129 (30 PNGs), labels at clip frames 4 and 9."""
    segs = segs if segs is not None else [{"id": CAR, "category_id": 13}, {"id": ROAD, "category_id": 0}]
    anns = []
    for k, j in enumerate((4, 9)):
        stem = f"0001_{k + 1:04d}_frankfurt_000123_{100 + j:06d}"
        write(root / "val" / "panoptic_video" / f"{stem}_gtFine_color.png", png_bytes(rgb_of(ids)))
        anns.append({"image_id": stem, "file_name": f"{stem}_gtFine_color.png", "segments_info": segs})
    for j in range(30):
        write(root / "val" / "img_all" / f"frankfurt_000123_{100 + j:06d}_leftImg8bit.png", png_bytes(frame_pixels(j)))
    js = {"images": [{"id": a["image_id"], "file_name": a["image_id"] + "_leftImg8bit.png"} for a in anns],
          "annotations": anns, "categories": CATEGORIES}
    (root / "panoptic_gt_val_city_vps.json").write_text(json.dumps(js))
    return root


def vipseg(root: Path, rgb: bytes | None = None, segs=None) -> Path:
    """Video '12_abc' with frames 00000001, 00000006 (sparse 8-digit names); both annotated."""
    segs = segs if segs is not None else [{"id": CAR, "category_id": 60}, {"id": ROAD, "category_id": 2}]
    cats = [{"id": 2, "name": "road", "isthing": 0}, {"id": 60, "name": "car", "isthing": 1}]
    images, anns = [], []
    for j, stem in enumerate(("00000001", "00000006")):
        path = root / "images" / "12_abc" / f"{stem}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame_pixels(j)).save(path, quality=95)  # the frame pixels are not the format under test
        write(root / "panomasksRGB" / "12_abc" / f"{stem}.png", rgb if rgb is not None else png_bytes(rgb_of(IDS)))
        images.append({"id": stem, "file_name": f"{stem}.jpg"})
        anns.append({"image_id": stem, "file_name": f"{stem}.png", "segments_info": segs})
    js = {"videos": [{"video_id": "12_abc", "images": images}],
          "annotations": [{"video_id": "12_abc", "annotations": anns}], "categories": cats}
    (root / "panoptic_gt_VIPSeg.json").write_text(json.dumps(js))
    return root


def test_cityscapes_vps_from_published_encoding(tmp_path):
    clip = load_panoptic_clip("cityscapes-vps", cityscapes(tmp_path), "1", size=None)
    assert clip.num_frames == 30 and clip.annotated == [4, 9] and clip.time(9) == pytest.approx(9 / 30)
    for j in (0, 9, 29):  # frame j of the clip is the file with frame number 100 + j
        np.testing.assert_array_equal((clip.frames[j] * 255).round().byte().permute(1, 2, 0).numpy(),
                                      frame_pixels(j))
    for j in (4, 9):
        np.testing.assert_array_equal(clip.ids[j].numpy(), IDS)
        segs = {s.id: s for s in clip.segments[j]}
        assert set(segs) == {CAR, ROAD}
        assert (segs[CAR].name, segs[CAR].isthing, segs[CAR].area, segs[CAR].bbox) == ("car", True, 5, (0, 0, 3, 2))
        assert (segs[ROAD].name, segs[ROAD].isthing, segs[ROAD].area, segs[ROAD].bbox) == ("road", False, 12,
                                                                                            (2, 0, 4, 4))
    sem = clip.semantic(4).numpy()
    assert sem[1, 0] == 13 and sem[3, 3] == 0 and sem[0, 0] == -1
    one = load_panoptic_frame("cityscapes-vps", tmp_path, "0001", 9, size=None)
    np.testing.assert_array_equal(one.ids[0].numpy(), IDS)


def test_vipseg_from_published_encoding(tmp_path):
    clip = load_panoptic_clip("vipseg", vipseg(tmp_path), "12_abc", size=None, crop=False)
    assert clip.num_frames == 2 and clip.annotated == [0, 1]
    np.testing.assert_array_equal(clip.ids[1].numpy(), IDS)
    names = {s.id: (s.category_id, s.name, s.isthing) for s in clip.segments[0]}
    assert names == {CAR: (60, "car", True), ROAD: (2, "road", False)}


def test_missing_id_and_unknown_category_are_clear_errors(tmp_path):
    with pytest.raises(XincError, match=f"segment id {ROAD} is not in the JSON"):
        load_panoptic_clip("cityscapes-vps", cityscapes(tmp_path / "a", segs=[{"id": CAR, "category_id": 13}]), "1",
                           size=None)
    with pytest.raises(XincError, match="unknown category_id 99"):
        load_panoptic_clip("vipseg", vipseg(tmp_path / "b", segs=[{"id": CAR, "category_id": 99},
                                                                  {"id": ROAD, "category_id": 2}]), "12_abc")
    with pytest.raises(XincError, match="malformed segments_info"):
        load_panoptic_clip("vipseg", vipseg(tmp_path / "c", segs=[{"id": CAR}]), "12_abc")


@pytest.mark.parametrize("mask,match", [
    (png_bytes(rgb_of(IDS[:3])), "masks must match their images"),  # 3 rows for a 4-row frame
    (png_bytes(rgb_of(IDS))[:40], "cannot read the panoptic PNG"),  # truncated after the header
    (b"GIF89a not a png", "cannot read the panoptic PNG"),
])
def test_malformed_vipseg_masks_are_clear_errors(tmp_path, mask, match):
    root = vipseg(tmp_path, rgb=mask)
    with pytest.raises(XincError, match=match):
        load_panoptic_clip("vipseg", root, "12_abc", size=None, crop=False)


def test_vipseg_missing_mask_is_a_clear_error(tmp_path):
    root = vipseg(tmp_path)
    (root / "panomasksRGB" / "12_abc" / "00000006.png").unlink()
    with pytest.raises(XincError, match="panoptic PNG not found"):
        load_panoptic_clip("vipseg", root, "12_abc")


# ------------------------------------------------------------------ the generator's files, decoded by the spec


def decode_rgb(path: Path) -> np.ndarray:
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 65536 * rgb[..., 2]


def test_synthetic_vipseg_files_follow_the_published_encodings(tmp_path):
    """panomasks: 0 void; 1..124 stuff with category v - 1; else category v // 100 - 1, instance v % 100.
    The category of every pixel from panomasks equals the one from panomasksRGB + segments_info."""
    from xinc.data.synth import generate_synthetic

    root = tmp_path / "vip"
    generate_synthetic(root, "vipseg", seed=3, frames=2, size=(36, 64), flo=False)
    js = json.loads((root / "panoptic_gt_VIPSeg.json").read_text())
    isthing = {c["id"]: bool(c["isthing"]) for c in js["categories"]}
    vid = js["annotations"][0]
    for ann in vid["annotations"]:
        ids = decode_rgb(root / "panomasksRGB" / vid["video_id"] / ann["file_name"])
        pm = np.asarray(Image.open(root / "panomasks" / vid["video_id"] / ann["file_name"])).astype(np.int64)
        cat_of = {s["id"]: s["category_id"] for s in ann["segments_info"]}
        assert set(np.unique(ids)) - {0} == set(cat_of)
        from_rgb = np.array([[cat_of.get(int(v), -1) for v in row] for row in ids])
        from_pm = np.where(pm == 0, -1, np.where(pm <= 124, pm - 1, pm // 100 - 1))
        np.testing.assert_array_equal(from_pm, from_rgb)
        things = pm > 124
        assert all(isthing[c] for c in np.unique(from_pm[things])) and not any(isthing[c] for c in
                                                                               np.unique(from_pm[(pm > 0) & ~things]))
        for sid in cat_of:  # one (category, instance) value per segment
            assert len(np.unique(pm[ids == sid])) == 1


def test_synthetic_cityscapes_files_follow_the_published_encodings(tmp_path):
    """panoptic_video RGB ids = segments_info ids; panoptic_inst = class or class * 1000 + instance, 255 void."""
    from xinc.data.synth import generate_synthetic

    root = tmp_path / "city"
    generate_synthetic(root, "cityscapes-vps", seed=4, frames=5, size=(32, 64), flo=False)
    js = json.loads((root / "panoptic_gt_val_city_vps.json").read_text())
    ann = js["annotations"][0]
    ids = decode_rgb(root / "val" / "panoptic_video" / ann["file_name"])
    inst = np.asarray(Image.open(root / "val" / "panoptic_inst" / ann["file_name"])).astype(np.int64)
    cat_of = {s["id"]: s["category_id"] for s in ann["segments_info"]}
    assert set(np.unique(ids)) - {0} == set(cat_of)
    cls = np.where(inst >= 1000, inst // 1000, inst)
    expect = np.array([[cat_of.get(int(v), 255) for v in row] for row in ids])
    np.testing.assert_array_equal(cls, expect)
    clip = load_panoptic_clip("cityscapes-vps", root, "0001", size=None)
    np.testing.assert_array_equal(clip.ids[4].numpy(), ids)
    assert torch.equal(clip.ids[4], torch.from_numpy(ids))
