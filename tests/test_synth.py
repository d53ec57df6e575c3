"""Synthetic panoptic generator: published layouts, determinism, exact round trip through the readers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from xinc.cli.main import main
from xinc.data.categories import CITYSCAPES_CATEGORIES, VIPSEG_CATEGORIES
from xinc.data.flow import read_flo
from xinc.data.panoptic import load_panoptic_clip, rgb_to_id
from xinc.data.synth import SynthConfig, generate_synthetic, load_gt_flow, render_video
from xinc.errors import XincError

SIZE = (64, 128)


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "city"
    generate_synthetic(root, "cityscapes-vps", seed=3, frames=10, size=SIZE, videos=2, pan=1.0)
    return root


@pytest.fixture(scope="module")
def vip(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "vip"
    generate_synthetic(root, "vipseg", seed=4, frames=6, size=(72, 128), videos=1, pan=-0.5)
    return root


def test_cityscapes_layout(city):
    js = json.loads((city / "panoptic_gt_val_city_vps.json").read_text())
    assert set(js) == {"images", "annotations", "categories"}
    cats = {c["id"]: c for c in js["categories"]}
    assert sorted(cats) == list(range(19))
    assert [c["id"] for c in js["categories"] if c["isthing"]] == list(range(11, 19))
    assert cats[13]["name"] == "car" and cats[6]["name"] == "traffic light"
    assert len(list((city / "val" / "img_all").glob("frankfurt_000000_*_leftImg8bit.png"))) == 10
    names = sorted(p.name for p in (city / "val" / "panoptic_video").glob("0001_*.png"))
    assert names == ["0001_0001_frankfurt_000000_000279_gtFine_color.png",
                     "0001_0002_frankfurt_000000_000284_gtFine_color.png"]  # fmt: skip
    assert sorted(p.name for p in (city / "val" / "panoptic_inst").glob("0001_*.png")) == names
    assert (city / "config.json").is_file()
    flow = load_gt_flow(city, "0001")
    assert flow.shape == (9, 2, *SIZE) and flow.dtype == np.float32
    np.testing.assert_array_equal(read_flo(city / "flow_gt" / "0001" / "0003.flo"), flow[3])


def test_cityscapes_inst_png_matches_rgb_and_json(city):
    js = json.loads((city / "panoptic_gt_val_city_vps.json").read_text())
    ann = js["annotations"][0]
    stem = ann["file_name"]
    ids = rgb_to_id(np.asarray(Image.open(city / "val" / "panoptic_video" / stem).convert("RGB")))
    inst = np.asarray(Image.open(city / "val" / "panoptic_inst" / stem)).astype(np.int64)
    info = {s["id"]: s for s in ann["segments_info"]}
    assert set(np.unique(ids).tolist()) - {0} == set(info)
    assert (inst[ids == 0] == 255).all()
    for sid, s in info.items():
        vals = np.unique(inst[ids == sid])
        assert len(vals) == 1 and s["area"] == int((ids == sid).sum())
        v = int(vals[0])
        cat = v // 1000 if v >= 1000 else v
        assert cat == s["category_id"] and (v >= 1000) == CITYSCAPES_CATEGORIES[cat].isthing


def test_cityscapes_round_trip_exact(city):
    cfg = SynthConfig("cityscapes-vps", seed=3, frames=10, size=SIZE, videos=2, pan=1.0)
    vid, _ = render_video(cfg, 0, SIZE)
    clip = load_panoptic_clip("cityscapes-vps", city, "0001", size=None)
    assert clip.num_frames == 10 and clip.annotated == [4, 9]
    assert clip.time(4) == pytest.approx(4 / 10)
    np.testing.assert_array_equal(
        (clip.frames.numpy() * 255).round().astype(np.uint8), vid.frames.transpose(0, 3, 1, 2)
    )
    for j in clip.annotated:
        np.testing.assert_array_equal(clip.ids[j].numpy(), vid.ids[j])
        for s in clip.segments[j]:
            assert vid.segments[s.id]["category_id"] == s.category_id
            assert CITYSCAPES_CATEGORIES[s.category_id].name == s.name
            assert s.area == int((vid.ids[j] == s.id).sum())
    assert clip.vanished == []
    # ids persist through the clip (track ids)
    assert {s.id for s in clip.segments[4] if s.isthing} & {s.id for s in clip.segments[9] if s.isthing}


def test_vipseg_layout_and_round_trip(vip):
    js = json.loads((vip / "panoptic_gt_VIPSeg.json").read_text())
    assert set(js) == {"videos", "annotations", "categories"}
    assert len(js["categories"]) == 124 and sum(c["isthing"] for c in js["categories"]) == 58
    assert any("_" in c["name"] for c in js["categories"])
    video = js["videos"][0]["video_id"]
    assert [im["file_name"] for im in js["videos"][0]["images"]][:2] == ["00000001.jpg", "00000006.jpg"]
    cfg = SynthConfig("vipseg", seed=4, frames=6, size=(72, 128), videos=1, pan=-0.5)
    vid, _ = render_video(cfg, 0, (72, 128))
    clip = load_panoptic_clip("vipseg", vip, video, size=None, crop=False)
    assert clip.annotated == list(range(6))
    for j in clip.annotated:
        np.testing.assert_array_equal(clip.ids[j].numpy(), vid.ids[j])
        pm = np.asarray(Image.open(vip / "panomasks" / video / f"{1 + 5 * j:08d}.png")).astype(np.int64)
        sem = clip.semantic(j).numpy()
        cat_from_pm = np.where(pm <= 124, pm - 1, pm // 100 - 1)
        np.testing.assert_array_equal(np.where(pm == 0, -1, cat_from_pm), sem)
        for s in clip.segments[j]:
            assert VIPSEG_CATEGORIES[s.category_id].name == s.name and s.isthing == vid.segments[s.id]["isthing"]
    # JPEG frames are close to the rendered ones
    assert np.abs(clip.frames.numpy() * 255 - vid.frames.transpose(0, 3, 1, 2)).mean() < 6


def test_gt_flow_explains_the_labels(city):
    """Warping frame j's ids by the exact flow lands on the same segment in frame j+1 (except at occlusions)."""
    cfg = SynthConfig("cityscapes-vps", seed=3, frames=10, size=SIZE, videos=2, pan=1.0)
    vid, _ = render_video(cfg, 1, SIZE)
    flow = load_gt_flow(city, "0002")
    H, W = SIZE
    yy, xx = np.mgrid[0:H, 0:W]
    agree, total = 0, 0
    for j in range(9):
        tx = np.rint(xx + flow[j, 0]).astype(int)
        ty = np.rint(yy + flow[j, 1]).astype(int)
        ok = (tx >= 0) & (tx < W) & (ty >= 0) & (ty < H)
        agree += int((vid.ids[j][ok] == vid.ids[j + 1][ty[ok], tx[ok]]).sum())
        total += int(ok.sum())
    assert agree / total > 0.95
    stuff = (vid.owner[:-1] >= 0) & (vid.owner[:-1] < 7)
    assert np.allclose(flow[:, 0][stuff], -1.0) and np.allclose(
        flow[:, 1][stuff], 0.0
    )  # background stuff moves with the pan
    assert np.allclose(flow[:, :, vid.owner[0] == -1], 0.0)  # the void bonnet is fixed to the camera


def test_deterministic_bytes(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for root, seed in ((a, 7), (b, 7), (c, 8)):
        generate_synthetic(root, "vipseg", seed=seed, frames=3, size=(48, 96), things=3, flo=False)
    da, db = _digest(a), _digest(b)
    assert da == db and len(da) > 5
    assert _digest(c) != da


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "ds"
    rc = main(["synth", "--out", str(out), "--format", "cityscapes-vps", "--size", "64x128", "--frames", "5",
               "--seed", "1", "--pan", "2", "--things", "2", "--no-flo"])  # fmt: skip
    assert rc == 0 and "wrote cityscapes-vps" in capsys.readouterr().out
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["pan"] == 2.0 and cfg["size"] == [64, 128] and cfg["video_ids"] == ["0001"]
    assert not list(out.rglob("*.flo"))
    clip = load_panoptic_clip("cityscapes-vps", out, "0001", size=(32, 64))
    assert clip.annotated == [4] and tuple(clip.frames.shape) == (5, 3, 32, 64)


@pytest.mark.parametrize(
    "kw, msg",
    [({"format": "kitti"}, "unknown"), ({"frames": 31}, "5..30"), ({"frames": 3}, "5..30"),
     ({"size": (8, 8)}, "too small"), ({"videos": 0}, "at least 1")],
)  # fmt: skip
def test_bad_options(tmp_path, kw, msg):
    with pytest.raises(XincError, match=msg):
        generate_synthetic(tmp_path / "x", **({"format": "cityscapes-vps", "size": (64, 128)} | kw))
    assert not (tmp_path / "x").exists()


def test_cli_error_is_one_line(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "x"), "--frames", "40", "--size", "64x128"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("xinc: error:") and "\n" not in err


def test_gt_flow_resampled_on_the_mask_grid(city):
    """Resized exact flow is sampled where the resized masks are: stuff pixels carry the scaled pan."""
    clip = load_panoptic_clip("cityscapes-vps", city, "0001", size=(32, 64))
    flow = load_gt_flow(city, "0001", size=(32, 64))
    assert flow.shape == (9, 2, 32, 64)
    stuff = [s.id for s in clip.segments[4] if not s.isthing]
    m = np.isin(clip.ids[4].numpy(), stuff)
    assert m.sum() > 100 and np.allclose(flow[4, 0][m], -0.5) and np.allclose(flow[4, 1][m], 0.0)
    assert np.allclose(flow[4][:, clip.ids[4].numpy() == 0], 0.0)
