"""Optical flow: DIS/Farneback accuracy on synthetic clips with exact flow, caching, .npy/.flo IO, pictures, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from xinc.cli.main import main
from xinc.data.flow import (
    compute_flow,
    endpoint_error,
    flow_to_color,
    load_flow,
    read_flo,
    resolve_params,
    save_flow,
    write_flo,
)
from xinc.data.panoptic import load_panoptic_clip
from xinc.data.synth import SynthConfig, generate_synthetic, load_gt_flow, render_video
from xinc.errors import XincError

SIZE = (96, 192)
CFG = dict(format="cityscapes-vps", seed=5, frames=6, size=SIZE, pan=1.5)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow") / "city"
    generate_synthetic(root, flo=False, **CFG)
    clip = load_panoptic_clip("cityscapes-vps", root, "0001", size=None)
    vid, _ = render_video(SynthConfig(**CFG), 0, SIZE)
    return root, clip, load_gt_flow(root, "0001"), vid.owner


@pytest.mark.parametrize("method, bound", [("dis", 0.45), ("farneback", 0.8)])
def test_endpoint_error_on_synthetic(scene, method, bound, record_property):
    """Mean EPE vs the exact flow is reported and bounded (loose: measured 0.2 px DIS, 0.4-0.6 px Farneback)."""
    _, clip, gt, owner = scene
    ff = compute_flow(clip.frames, method)
    assert ff.flow.shape == gt.shape and ff.flow.dtype == np.float32 and ff.method == method
    epe = endpoint_error(ff.flow, gt)
    zero = endpoint_error(np.zeros_like(gt), gt)
    things = endpoint_error(ff.flow, gt, owner[:-1] >= 7)
    record_property("epe", epe)
    print(f"{method}: mean EPE {epe:.3f} px (things {things:.3f} px; zero-flow baseline {zero:.3f} px)")
    assert epe < bound and epe < 0.6 * zero


def test_params_recorded_and_cache(scene, tmp_path):
    _, clip, _, _ = scene
    ff = compute_flow(clip.frames[:3], "dis", cache_dir=tmp_path)
    assert ff.params["preset"] == "medium" and "patch_size" in ff.params and "opencv" in ff.params
    files = sorted(tmp_path.glob("dis-*.npy"))
    assert len(files) == 1 and json.loads(files[0].with_suffix(".json").read_text())["method"] == "dis"
    np.save(files[0], np.full_like(ff.flow, 7.0))  # a cache hit returns the stored array
    assert (compute_flow(clip.frames[:3], "dis", cache_dir=tmp_path).flow == 7.0).all()
    compute_flow(clip.frames[:3], "dis", preset="fast", cache_dir=tmp_path)
    compute_flow(clip.frames[1:4], "dis", cache_dir=tmp_path)
    assert len(list(tmp_path.glob("dis-*.npy"))) == 3  # key covers parameters and frames


def test_bad_requests(scene):
    _, clip, _, _ = scene
    with pytest.raises(XincError, match="unknown flow estimator"):
        compute_flow(clip.frames, "raft")
    with pytest.raises(XincError, match="at least 2 frames"):
        compute_flow(clip.frames[:1])
    with pytest.raises(XincError, match="unknown DIS preset"):
        compute_flow(clip.frames, preset="slow")
    with pytest.raises(XincError, match="unknown farneback parameter"):
        resolve_params("farneback", bogus=1)


def test_flo_and_npy_io(tmp_path):
    rng = np.random.default_rng(0)
    f = rng.standard_normal((3, 2, 5, 7)).astype(np.float32)
    for i in range(3):
        write_flo(tmp_path / "pairs" / f"{i:04d}.flo", f[i])
    np.testing.assert_array_equal(read_flo(tmp_path / "pairs" / "0001.flo"), f[1])
    np.testing.assert_array_equal(load_flow(tmp_path / "pairs").flow, f)
    raw = (tmp_path / "pairs" / "0000.flo").read_bytes()
    assert raw[:4] == b"PIEH" and len(raw) == 12 + 8 * 35
    save_flow(tmp_path / "f.npy", load_flow(tmp_path / "pairs"))
    loaded = load_flow(tmp_path / "f.npy", shape=(5, 7))
    np.testing.assert_array_equal(loaded.flow, f)
    assert loaded.method == "file"
    with pytest.raises(XincError, match="flow is 5x7 but the frames are 4x4"):
        load_flow(tmp_path / "f.npy", shape=(4, 4))
    (tmp_path / "bad.flo").write_bytes(b"XXXX" + raw[4:])
    with pytest.raises(XincError, match=r"bad\.flo: not a Middlebury"):
        read_flo(tmp_path / "bad.flo")
    (tmp_path / "short.flo").write_bytes(raw[:40])
    with pytest.raises(XincError, match="truncated"):
        read_flo(tmp_path / "short.flo")


def test_color_wheel():
    f = np.zeros((2, 3, 4), np.float32)
    assert (flow_to_color(f) == 255).all()  # no motion is white
    f[0, 0, 0], f[1, 0, 1], f[0, 0, 2] = 1.0, 1.0, -1.0
    pic = flow_to_color(f)
    right, down, left = pic[0, 0], pic[0, 1], pic[0, 2]
    assert pic.dtype == np.uint8 and pic.shape == (3, 4, 3)
    assert tuple(right) == (255, 0, 0)  # Middlebury: rightward motion is red
    assert len({tuple(right), tuple(down), tuple(left)}) == 3


def test_gt_flo_matches_npy(tmp_path):
    root = tmp_path / "v"
    generate_synthetic(root, "vipseg", seed=1, frames=3, size=(48, 96), things=2, pan=0.5)
    video = json.loads((root / "config.json").read_text())["video_ids"][0]
    gt = load_gt_flow(root, video)
    np.testing.assert_array_equal(load_flow(root / "flow_gt" / video / "0001.flo").flow[0], gt[1])


def test_cli_flow(scene, tmp_path, capsys):
    root: Path = scene[0]
    out = tmp_path / "flow"
    rc = main(["flow", f"cityscapes-vps:{root}:0001", "--out", str(out), "--size", "48x96", "--frames", "0-3"])
    assert rc == 0 and "wrote 3 flow field(s)" in capsys.readouterr().out
    flow = np.load(out / "flow.npy")
    assert flow.shape == (3, 2, 48, 96) and flow.dtype == np.float32
    assert sorted(p.name for p in (out / "pictures").iterdir()) == ["0000_0001.png", "0001_0002.png", "0002_0003.png"]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == "dis" and cfg["params"]["preset"] == "medium" and cfg["frames"] == [0, 1, 2, 3]
    out2 = tmp_path / "flow2"
    rc = main(
        [
            "flow",
            str(root / "val" / "img_all"),
            "--out",
            str(out2),
            "--method",
            "farneback",
            "--no-pictures",
            "--size",
            "native",
        ]
    )
    assert rc == 0 and np.load(out2 / "flow.npy").shape == (5, 2, 96, 192) and not (out2 / "pictures").exists()
    assert json.loads((out2 / "config.json").read_text())["params"]["winsize"] == 15
    assert main(["flow", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
