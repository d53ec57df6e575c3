"""Panoptic readers: resampling on the image grid, segment tables, vanished segments, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xinc.data.frames import preprocess, read_image, resize_masks
from xinc.data.panoptic import (
    auto_crop,
    id_to_rgb,
    list_videos,
    load_panoptic_clip,
    load_panoptic_frame,
    load_video_clip,
    rgb_to_id,
)
from xinc.data.synth import generate_synthetic
from xinc.errors import XincError

CITY_JSON = "panoptic_gt_val_city_vps.json"


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pan") / "city"
    generate_synthetic(root, "cityscapes-vps", seed=11, frames=10, size=(64, 128), flo=False)
    return root


@pytest.fixture(scope="module")
def vip(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pan") / "vip"
    generate_synthetic(root, "vipseg", seed=12, frames=4, size=(72, 128), flo=False)
    return root


@pytest.fixture
def city_copy(city, tmp_path) -> Path:
    dst = tmp_path / "city"
    shutil.copytree(city, dst)
    return dst


def _first_ann(root: Path) -> tuple[dict, dict, Path]:
    js = json.loads((root / CITY_JSON).read_text())
    ann = js["annotations"][0]
    return js, ann, root / "val" / "panoptic_video" / ann["file_name"]


def test_rgb_id_round_trip():
    ids = np.array([[0, 1, 255], [256, 65536 + 7, 16777215]], np.int64)
    np.testing.assert_array_equal(rgb_to_id(id_to_rgb(ids)), ids)


def test_auto_crop_matches_paper():
    assert auto_crop((1024, 2048), (128, 256)) is None
    assert auto_crop((720, 1280), (128, 256)) == (640, 1280)
    assert auto_crop((720, 1280), None) is None


def test_resampled_on_the_image_grid(city):
    native = load_panoptic_clip("cityscapes-vps", city, "0001", size=None)
    small = load_panoptic_clip("cityscapes-vps", city, "1", size=(32, 64))
    assert small.video == "0001" and small.annotated == native.annotated == [4, 9]
    imgs = torch.stack([read_image(f) for f in native.files])
    torch.testing.assert_close(small.frames, preprocess(imgs, None, (32, 64)), rtol=0, atol=0)
    for j in small.annotated:
        torch.testing.assert_close(small.ids[j], resize_masks(native.ids[j], (32, 64)), rtol=0, atol=0)
        segs = small.segments[j]
        void = int((small.ids[j] == 0).sum())
        assert sum(s.area for s in segs) + void == 32 * 64
        for s in segs:
            m = small.mask(j, s.id)
            ys, xs = torch.nonzero(m, as_tuple=True)
            x, y, w, h = s.bbox
            assert (int(xs.min()), int(ys.min()), int(xs.max()) - x + 1, int(ys.max()) - y + 1) == (x, y, w, h)
            assert int(m.sum()) == s.area
        ids, masks = small.one_hot(j)
        assert masks.shape == (len(segs), 32, 64) and (masks.sum(0) <= 1).all()
        torch.testing.assert_close(masks.sum((1, 2)), torch.tensor([s.area for s in segs]))
        sem = small.semantic(j)
        for s in segs:
            assert (sem[small.mask(j, s.id)] == s.category_id).all()
        assert (sem[small.ids[j] == 0] == -1).all()


def test_time_alignment(city):
    clip = load_panoptic_clip("cityscapes-vps", city, "0001", size=(32, 64))
    assert clip.num_frames == 10 and clip.times == [0.4, 0.9]
    s = clip.summary()
    assert s["annotated"] == [4, 9] and s["num_vanished"] == 0 and json.dumps(s)


def test_vanished_segments_are_reported(city_copy):
    js, ann, png = _first_ann(city_copy)
    ids = rgb_to_id(np.asarray(Image.open(png).convert("RGB")))
    ids[40, 41] = 999  # a one-pixel segment that a 4x downsampling misses
    ids[0:2, 0:3] = 998  # a tiny segment at the top-left corner
    Image.fromarray(id_to_rgb(ids)).save(png)
    ann["segments_info"] += [{"id": 999, "category_id": 13, "iscrowd": 0}, {"id": 998, "category_id": 7, "iscrowd": 0}]
    (city_copy / CITY_JSON).write_text(json.dumps(js))
    clip = load_panoptic_clip("cityscapes-vps", city_copy, "0001", size=(16, 32))
    lost = {v.id: v for v in clip.vanished}
    assert (
        lost[999].reason == "resize" and lost[999].name == "car" and lost[999].native_area == 1 and lost[999].frame == 4
    )
    assert 999 not in {s.id for s in clip.segments[4]}
    cropped = load_panoptic_clip("cityscapes-vps", city_copy, "0001", size=None, crop=(60, 120))
    assert {v.id: v.reason for v in cropped.vanished}[998] == "crop"


def test_vipseg_crop_and_every_frame(vip):
    video = list_videos("vipseg", vip)[0]
    clip = load_panoptic_clip("vipseg", vip, video, size=(32, 64))
    assert clip.crop == (64, 128) and clip.native_size == (72, 128)
    assert clip.annotated == [0, 1, 2, 3] and clip.times == [0, 0.25, 0.5, 0.75]
    full = load_panoptic_clip("vipseg", vip, video, size=None, crop=False)
    torch.testing.assert_close(clip.ids[2], resize_masks(full.ids[2][4:68], (32, 64)), rtol=0, atol=0)


def test_single_frame_and_any_video(city, tmp_path):
    one = load_panoptic_frame("cityscapes-vps", city, "0001", 9, size=(32, 64))
    clip = load_panoptic_clip("cityscapes-vps", city, "0001", size=(32, 64))
    assert one.num_frames == 1 and one.annotated == [0] and one.video == "0001@9"
    torch.testing.assert_close(one.frames[0], clip.frames[9])
    torch.testing.assert_close(one.ids[0], clip.ids[9])
    with pytest.raises(XincError, match="not annotated"):
        load_panoptic_frame("cityscapes-vps", city, "0001", 3)
    v = load_video_clip(city / "val" / "img_all", size=(32, 64))
    torch.testing.assert_close(v.frames, clip.frames)
    assert v.annotated == [] and v.dataset == "frames"
    assert list_videos("cityscapes-vps", city) == ["0001"]


# ---------------------------------------------------------------------------------------- malformed


def test_missing_json(city_copy):
    (city_copy / CITY_JSON).unlink()
    with pytest.raises(XincError, match=r"panoptic_gt_val_city_vps\.json: file not found"):
        load_panoptic_clip("cityscapes-vps", city_copy, "0001")


def test_mask_of_wrong_size(city_copy):
    _, _, png = _first_ann(city_copy)
    Image.open(png).resize((64, 32), Image.NEAREST).save(png)
    with pytest.raises(XincError, match=rf"{png.name}: mask is 32x64 but its frame is 64x128"):
        load_panoptic_clip("cityscapes-vps", city_copy, "0001")


def test_unknown_category(city_copy):
    js, ann, _ = _first_ann(city_copy)
    ann["segments_info"][0]["category_id"] = 77
    (city_copy / CITY_JSON).write_text(json.dumps(js))
    with pytest.raises(XincError, match=r"panoptic_gt_val_city_vps\.json: segment \d+ of .* unknown category_id 77"):
        load_panoptic_clip("cityscapes-vps", city_copy, "0001")


def test_id_missing_from_json(city_copy):
    js, ann, png = _first_ann(city_copy)
    ann["segments_info"] = ann["segments_info"][1:]
    (city_copy / CITY_JSON).write_text(json.dumps(js))
    with pytest.raises(XincError, match=rf"{png.name}: segment id \d+ is not in the JSON"):
        load_panoptic_clip("cityscapes-vps", city_copy, "0001")


def test_missing_frame_and_unknown_video(city_copy):
    with pytest.raises(XincError, match="no annotations for video '0042'; videos here: 0001"):
        load_panoptic_clip("cityscapes-vps", city_copy, "0042")
    sorted((city_copy / "val" / "img_all").iterdir())[7].unlink()
    with pytest.raises(XincError, match=r"frankfurt_000000_000282_leftImg8bit\.png: image file not found"):
        load_panoptic_clip("cityscapes-vps", city_copy, "0001")


def test_empty_folders(tmp_path):
    with pytest.raises(XincError, match="dataset folder not found"):
        load_panoptic_clip("vipseg", tmp_path / "nope", "x")
    with pytest.raises(XincError, match=r"panoptic_gt_VIPSeg\.json: file not found"):
        load_panoptic_clip("vipseg", tmp_path, "x")
    (tmp_path / "frames").mkdir()
    with pytest.raises(XincError, match="frames: folder holds no image frames"):
        load_video_clip(tmp_path / "frames")
    with pytest.raises(XincError, match="unknown dataset ; choose one of cityscapes-vps, vipseg"):
        load_panoptic_clip("kitti", tmp_path, "x")


def test_bad_json(tmp_path):
    (tmp_path / "panoptic_gt_VIPSeg.json").write_text("{not json")
    with pytest.raises(XincError, match=r"panoptic_gt_VIPSeg\.json: not valid JSON"):
        load_panoptic_clip("vipseg", tmp_path, "x")
    (tmp_path / "panoptic_gt_VIPSeg.json").write_text(json.dumps({"videos": []}))
    with pytest.raises(XincError, match="missing key 'annotations'"):
        load_panoptic_clip("vipseg", tmp_path, "x")


def test_any_video_file(city, tmp_path):
    """A video file goes through the same crop/resize pipeline (decoded with PyAV), without labels."""
    import av

    frames = [np.asarray(Image.open(f).convert("RGB")) for f in load_panoptic_clip("cityscapes-vps", city, "1").files]
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 128, 64, "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    clip = load_video_clip(path, size=(32, 32))
    assert clip.num_frames == 10 and clip.crop == (64, 64) and tuple(clip.frames.shape) == (10, 3, 32, 32)
    ref = load_video_clip(city / "val" / "img_all", size=(32, 32))
    assert (clip.frames - ref.frames).abs().mean() < 0.06  # lossy codec, same pipeline
    assert load_video_clip(path, size=(32, 32), frames=3).num_frames == 3


def test_img_all_with_prefixed_names(city_copy):
    """Releases that name img_all frames '<vid>_<gidx>_<city>_<seq>_<frame>_newImg8bit.png' also load."""
    ref = load_panoptic_clip("cityscapes-vps", city_copy, "0001", size=(32, 64))
    for k, p in enumerate(sorted((city_copy / "val" / "img_all").iterdir())):
        p.rename(p.with_name(f"0001_{k + 1:04d}_" + p.name.replace("leftImg8bit", "newImg8bit")))
    clip = load_panoptic_clip("cityscapes-vps", city_copy, "0001", size=(32, 64))
    assert clip.num_frames == 10 and torch.equal(clip.frames, ref.frames)
