"""`xinc analyze` end to end on tiny models: data resolution, skipping, outputs, atomicity."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from xinc.cli.main import main
from xinc.models import FFN, FFNConfig, NeRV, nerv_config_for_budget, save_model


@pytest.fixture(scope="module")
def ffn_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("ffn")
    save_model(FFN(FFNConfig(height=12, width=20, hidden=8), torch.Generator().manual_seed(0)), d / "model")
    img = (np.random.default_rng(0).random((12, 20, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(d / "img.png")
    return d


@pytest.fixture(scope="module")
def nerv_synth(tmp_path_factory):
    from xinc.data.synth import generate_synthetic

    d = tmp_path_factory.mktemp("nerv")
    cfg = generate_synthetic(d / "data", "cityscapes-vps", seed=0, frames=10, size=(32, 32), things=2)
    nc = nerv_config_for_budget(height=32, width=32, num_frames=10, strides=[2, 2], embed="pe_1.25_8", fc_dim=4)
    torch.manual_seed(0)
    save_model(NeRV(nc), d / "model")
    return d, cfg["video_ids"][0]


def _results(out):
    return json.loads((out / "results.json").read_text())


def test_ffn_plain_image_skips_labels(ffn_dir, capsys):
    out = ffn_dir / "run"
    rc = main(["analyze", str(ffn_dir / "model"), "--data", str(ffn_dir / "img.png"), "--out", str(out),
               "--mode", "linear", "--option", "a5.null=1", "a5.bootstrap=50", "a2.topk=8", "--no-progress"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "skipping a3" in err
    r = _results(out)
    assert r["data"]["source"] == "data" and r["data"]["labels"] is False
    assert set(r) >= {"model", "data", "reconstruction", "canvas", "a1", "a2", "a5"} and "a3" not in r
    assert r["skipped"]["a3"].startswith("needs panoptic")
    assert r["a5"]["segments"].startswith("skipped")
    assert set(r["canvas"]) == {"layer1", "layer2", "layer3"}
    assert {"exact", "rule", "num_neurons", "residual"} <= set(r["canvas"]["layer1"])
    assert r["canvas"]["layer3"]["num_neurons"] == 8
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_dir"] == str(ffn_dir / "model") and cfg["options"]["a5"]["null"] == 1
    assert cfg["command"].startswith(f"xinc analyze {ffn_dir / 'model'}")
    for section in ("a1", "a2", "a5"):
        for f in r[section]["figures"]:
            assert (out / f["path"]).is_file() and (out / f["path"]).with_suffix(".pdf").is_file()
    assert (out / "tables" / "a2_thresholds.csv").is_file()


def test_explicit_label_analysis_without_labels_fails_cleanly(ffn_dir, capsys):
    out = ffn_dir / "bad"
    rc = main(["analyze", str(ffn_dir / "model"), "--data", str(ffn_dir / "img.png"), "--out", str(out),
               "--analyses", "a3", "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a3" in err[0] and "--dataset" in err[0]
    assert not out.exists() and not (ffn_dir / "bad.partial").exists()
    assert main(["analyze", str(ffn_dir / "model"), "--out", str(out), "--analyses", "a9"]) == 2
    assert main(["analyze", str(ffn_dir / "model"), "--out", str(out), "--layers", "block7"]) == 2


def test_reconstruction_fallback(ffn_dir, capsys):
    out = ffn_dir / "recon"
    assert main(["analyze", str(ffn_dir / "model"), "--out", str(out), "--analyses", "a1", "--mode", "faithful",
                 "--no-progress"]) == 0
    assert "--mode faithful is deprecated" in capsys.readouterr().err  # the old name still works for one release
    r = _results(out)
    assert r["data"]["source"] == "reconstruction"
    assert list(r["a1"]["layers"]) == ["paper"]


def test_bad_analysis_options_fail_before_work(ffn_dir, capsys):
    out = ffn_dir / "badopt"
    for opt, what in (("a5.nul=1", "a5.nul"), ("a5.null=many", "a5.null"), ("a4.region=everywhere", "a4.region"),
                      ("a9.x=1", "a9"), ("a5null=1", "AID.NAME=VALUE")):
        rc = main(["analyze", str(ffn_dir / "model"), "--out", str(out), "--option", opt, "--no-progress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and what in err[0], (opt, err)
        assert not out.exists()


def test_nerv_on_synthetic_dataset(nerv_synth):
    d, video = nerv_synth
    out = d / "run"
    rc = main(["analyze", str(d / "model"), "--dataset", "cityscapes-vps", "--root", str(d / "data"), "--video",
               video, "--out", str(out), "--analyses", "a3,a5", "--layers", "block2,head", "--mode", "both",
               "--chunk-neurons", "16", "--option", "a5.null=1", "a5.bootstrap=50", "a5.paper_cells=4",
               "--no-progress"])
    assert rc == 0
    r = _results(out)
    assert r["data"]["frames"] == [4, 9] and r["data"]["labels"] is True
    assert r["a3"]["frames"] == [4, 9]
    assert r["a5"]["segments"] == "used"
    assert "segments" in r["a5"]["linear"]["head"]["ordering"]["order"]
    assert set(r["canvas"]["block2"]["modes"]) == {"paper", "linear"}
    assert set(r["canvas"]["head"]["residual"]) - {"per_frame"}
    assert len(r["reconstruction"]["psnr_8bit"]) == 2


def test_recorded_training_source_is_used(ffn_dir):
    d = ffn_dir / "recorded"
    model = FFN(FFNConfig(height=12, width=20, hidden=8), torch.Generator().manual_seed(1))
    save_model(model, d, {"train": {"data": {"kind": "image", "src": str(ffn_dir / "img.png"), "crop": None,
                                             "size": [12, 20], "frames": 1}}})
    out = ffn_dir / "recorded_run"
    assert main(["analyze", str(d), "--out", str(out), "--analyses", "a1", "--mode", "linear",
                 "--no-progress"]) == 0
    r = _results(out)
    assert r["data"]["source"] == "recorded source" and r["data"]["src"] == str(ffn_dir / "img.png")
    assert r["reconstruction"]["psnr_8bit"][0] < 40  # a random model against the real image, not itself
