"""Contribution videos: the shared sampler, selected maps and M_t against whole canvases, decodable files, the
CLI's errors, and a real browser playing the MP4."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import torch
from PIL import Image

from xinc.analysis.motion import change_map
from xinc.canvas import compute_canvas
from xinc.canvas.sampling import sample_neurons
from xinc.cli.main import main
from xinc.models import FFN, FFNConfig, NeRV, NeRVConfig, save_model
from xinc.video import VideoConfig, make_videos
from xinc.video import data as vd


def _tiny_nerv(T: int = 4) -> NeRV:
    cfg = NeRVConfig(height=16, width=32, num_frames=T, fc_hw=[2, 4], fc_dim=6, strides=[4, 2], kernel_sizes=[3, 3],
                     widths=[6, 4])
    return NeRV(cfg, torch.Generator().manual_seed(0)).eval()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("vid") / "model"
    save_model(_tiny_nerv(), d)
    return d


def test_sampler_is_seeded_shared_and_respects_alive():
    a = sample_neurons(100, 6, seed=3)
    assert a == sample_neurons(100, 6, seed=3) and a == sorted(a) and len(set(a)) == 6
    assert a != sample_neurons(100, 6, seed=4)
    assert sample_neurons(100, 6, 3, alive=np.ones(100, bool)) == a  # all alive: the same neurons
    alive = np.ones(100, bool)
    alive[a[0]] = False
    b = sample_neurons(100, 6, 3, alive=alive)
    assert a[0] not in b and set(a[1:]) <= set(b)  # the next neuron of the same permutation replaces it
    assert sample_neurons(100, 3, 3) == sorted(sample_neurons(100, 3, 3))
    assert set(sample_neurons(100, 3, 3)) <= set(a)  # fewer neurons: a prefix of the same permutation
    from xinc.analysis.objects import sample_neurons as a3_sampler

    values = np.ones((100, 5))
    assert a3_sampler(values, 6, 3).tolist() == a  # A3 (report) picks the same neurons
    model = _tiny_nerv()
    sel = vd.choose_neurons(model, "head", n=6, seed=3, given=None, mode="paper")
    assert sel.neurons == sample_neurons(sel.info.num_neurons, 6, 3)


@pytest.mark.parametrize("layer", ["head", "block2", "block1"])
def test_selected_maps_equal_the_whole_canvas(layer):
    model = _tiny_nerv()
    full = compute_canvas(model, layer, 2).maps
    ks = [0, 3, full.shape[0] - 1, 5]
    got = vd.neuron_maps(model, layer, 2, ks)
    assert torch.allclose(got, full[ks], atol=1e-6)
    assert vd.neuron_runs([0, 1, 2, 200, 201], gap=4) == [(0, 3), (200, 202)]


@pytest.mark.parametrize("budget", [1024.0, 0.0])  # held previous canvas / lockstep pairs
def test_fluctuation_equals_change_map(budget):
    model = _tiny_nerv()
    got = vd.fluctuation(model, "block2", [0, 1, 3], (16, 32), budget_mb=budget)
    ref = [change_map(model, "block2", a, b).numpy() for a, b in ((0, 1), (1, 3))]
    full = [compute_canvas(model, "block2", f).maps.abs() for f in (0, 1)]
    assert np.allclose(ref[0], (full[1] - full[0]).abs().sum(0).numpy(), atol=1e-5)  # independent reference
    assert np.allclose(got, np.stack(ref), atol=1e-5)


def test_videos_decode_and_scales_hold_over_frames(tmp_path):
    model = _tiny_nerv()
    frames = [0, 1, 2, 3]
    src = torch.rand(4, 3, 16, 32, generator=torch.Generator().manual_seed(0))
    cfg = VideoConfig(neurons=3, seed=1, grid_layer="block2", grid_top=4, extra_formats=["webp", "gif"],
                      progress=False, panel_width=64)
    res = make_videos(model, tmp_path, cfg, src, frames=frames)
    for name in ("neurons", "flow", "grid_block2"):
        with av.open(str(tmp_path / f"{name}.mp4")) as c:
            s = c.streams.video[0]
            pics = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
            assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
        assert len(pics) == (3 if name == "flow" else 4) and pics[0].shape[0] % 2 == 0 and pics[0].shape[1] % 2 == 0
        for ext in ("webp", "gif"):
            assert Image.open(tmp_path / f"{name}.{ext}").n_frames == len(pics)
        assert Image.open(tmp_path / f"{name}.png").size == (pics[0].shape[1], pics[0].shape[0])
    v = res["videos"]["neurons"]["layers"]
    assert set(v) == {"block2", "head"}
    for layer, entry in v.items():
        assert entry["neurons"] == sample_neurons(len(compute_canvas(model, layer, 0).maps), 3, 1)
        want = [max(float(compute_canvas(model, layer, f).maps[k].abs().max()) for f in frames)
                for k in entry["neurons"]]
        assert np.allclose(entry["scale_max_abs"], want, rtol=1e-5)  # one scale per neuron over all frames
    grid = res["videos"]["grid"]
    tot = compute_canvas(model, "block2", 0).totals()
    assert grid["neurons"] == torch.argsort(-tot, stable=True)[:4].tolist()
    assert res["videos"]["flow"]["pairs"] == [[0, 1], [1, 2], [2, 3]]


def test_cli_writes_folder_and_refuses_bad_input(model_dir, tmp_path, capsys):
    out = tmp_path / "v"
    args = ["video", str(model_dir), "--out", str(out), "--frames", "0-2", "--neurons", "2", "--no-progress"]
    assert main(args + ["--neuron-index", "head=1,4"]) == 0
    meta = json.loads((out / "videos.json").read_text())
    assert meta["videos"]["neurons"]["layers"]["head"]["neurons"] == [1, 4]
    assert json.loads((out / "config.json").read_text())["video"]["seed"] == 0
    assert {"neurons.mp4", "flow.mp4", "neurons.png", "flow.png"} <= {p.name for p in out.iterdir()}
    capsys.readouterr()
    assert main(args) == 2 and "already exists" in capsys.readouterr().err  # no --overwrite
    bad = tmp_path / "bad"
    for extra in (["--layers", "block9"], ["--neuron-index", "head=999"], ["--neuron-index", "head=x"],
                  ["--fps", "0"]):
        assert main(["video", str(model_dir), "--out", str(bad), "--no-progress", *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("xinc: error: ") and err.count("\n") == 1
        assert not bad.exists() and not (tmp_path / "bad.partial").exists()
    ffn = tmp_path / "ffn"
    save_model(FFN(FFNConfig(height=8, width=8, hidden=4), torch.Generator().manual_seed(0)), ffn)
    assert main(["video", str(ffn), "--out", str(bad)]) == 2 and "FFN" in capsys.readouterr().err


def test_videos_play_in_chromium(model_dir, tmp_path):
    from browser import chrome, severe_logs

    out = tmp_path / "v"
    assert main(["video", str(model_dir), "--out", str(out), "--neurons", "2", "--no-progress",
                 "--no-fluctuation"]) == 0
    page = out / "page.html"
    page.write_text('<!DOCTYPE html><html><body><video id="v" src="neurons.mp4" muted preload="auto"></video>'
                    "</body></html>")
    driver = chrome(tmp_path)
    try:
        driver.get(page.as_uri())
        from selenium.webdriver.support.ui import WebDriverWait

        state = WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "const v=document.getElementById('v');return v.readyState>=2?[v.readyState,v.duration,v.videoWidth]:null"))
        assert state[0] >= 2 and state[1] > 0 and state[2] > 0
        assert severe_logs(driver) == []
    finally:
        driver.quit()
