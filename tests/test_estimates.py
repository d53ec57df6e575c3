"""Error bounds of frame-sampled statistics: the formula on a hand-computed case, and `xinc analyze
--sample-frames` recording them in results.json and printing them."""

from __future__ import annotations

import json
import math

import pytest
import torch

from xinc.analysis.estimates import add_frame_estimates, mean_estimate
from xinc.cli.main import main
from xinc.models import NeRV, nerv_config_for_budget, save_model


def test_mean_estimate_hand_computed():
    # x = 1, 2, 3, 6 sampled from N = 10 frames: mean 3, s^2 = (4 + 1 + 0 + 9) / 3 = 14/3,
    # SE = sqrt(14/3) / 2 * sqrt(6/9) = sqrt(7) / 3, t(0.975, 3) = 3.182446305...
    est = mean_estimate([1.0, 2.0, 3.0, 6.0], 10)
    assert est["n"] == 4 and est["of"] == 10 and est["mean"] == pytest.approx(3.0)
    assert est["se"] == pytest.approx(math.sqrt(7) / 3, rel=1e-12)
    assert est["ci95"] == pytest.approx([3 - 3.182446305284263 * math.sqrt(7) / 3,
                                         3 + 3.182446305284263 * math.sqrt(7) / 3], rel=1e-9)
    assert est["fpc"] == pytest.approx(math.sqrt(6 / 9))
    census = mean_estimate([1.0, 2.0], 2)  # every frame: no sampling error
    assert census["se"] == 0.0 and census["ci95"] == [1.5, 1.5]
    one = mean_estimate([4.0], 7)
    assert one["mean"] == 4.0 and one["se"] is None and one["ci95"] is None
    assert mean_estimate([None, float("nan"), 2.0, 4.0], 5)["n"] == 2  # undefined values are not counted
    with pytest.raises(ValueError):
        mean_estimate([1.0, 2.0, 3.0], 2)


def test_add_frame_estimates_finds_nested_per_frame_records():
    tree = {"layers": {"paper": {"head": {"r": 0.5, "per_frame": [{"r": 0.2, "s": None}, {"r": 0.8, "s": 1.0}]}}}}
    assert add_frame_estimates(tree, 6) == 1
    est = tree["layers"]["paper"]["head"]["estimate"]
    assert est["r"]["mean"] == pytest.approx(0.5) and est["r"]["of"] == 6 and est["s"]["n"] == 1


def test_analyze_sample_frames_records_error_bounds(tmp_path, capsys):
    from xinc.data.synth import generate_synthetic

    cfg = generate_synthetic(tmp_path / "data", "cityscapes-vps", seed=0, frames=8, size=(32, 32), things=1)
    nc = nerv_config_for_budget(height=32, width=32, num_frames=8, strides=[2, 2], embed="pe_1.25_8", fc_dim=4)
    torch.manual_seed(0)
    save_model(NeRV(nc), tmp_path / "model")
    out = tmp_path / "run"
    rc = main(["analyze", str(tmp_path / "model"), "--dataset", "cityscapes-vps", "--root", str(tmp_path / "data"),
               "--video", cfg["video_ids"][0], "--frames", "0-7", "--sample-frames", "3", "--out", str(out),
               "--analyses", "a1", "--layers", "head", "--mode", "paper", "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "frames sampled: 3 of 8" in printed and "95% [" in printed
    r = json.loads((out / "results.json").read_text())
    samp = r["data"]["sampling"]
    assert samp["n"] == 3 and samp["of"] == 8 and samp["frames"] == r["data"]["frames"] and len(samp["frames"]) == 3
    psnr = r["reconstruction"]["psnr_8bit"]
    want, got = mean_estimate(psnr, 8), r["reconstruction"]["estimate"]["psnr_8bit"]
    assert got["ci95"] == pytest.approx(want.pop("ci95")) and {k: got[k] for k in want} == pytest.approx(want)
    head = r["a1"]["layers"]["paper"]["head"]
    vals = [f["pearson_intensity"] for f in head["per_frame"]]
    est = head["estimate"]["pearson_intensity"]
    m = sum(vals) / 3
    se = math.sqrt(sum((v - m) ** 2 for v in vals) / 2) / math.sqrt(3) * math.sqrt(5 / 7)
    assert est["mean"] == pytest.approx(m) and est["se"] == pytest.approx(se)
    assert est["ci95"][0] == pytest.approx(m - 4.302652729749464 * se)  # t(0.975, 2)


def test_median_interval_order_statistics_hand_computed():
    from xinc.analysis.estimates import median_interval

    # n = 10: P(B <= 1) = 11/1024 <= 2.5 % < P(B <= 2) = 56/1024, so j = 2: [x_(2), x_(9)], coverage 1 - 22/1024
    vals = [9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0, 5.0, 10.0]
    est = median_interval(vals, 1000)
    assert est["median"] == pytest.approx(5.5) and est["ci"] == [2.0, 9.0]
    assert est["coverage"] == pytest.approx(1 - 22 / 1024)
    assert median_interval(vals[:5], 100)["ci"] is None  # n = 5: even [x_(1), x_(5)] covers only 93.75 %
    assert median_interval(vals[:6], 100)["ci"] == [1.0, 9.0]  # n = 6: P(B = 0) = 1/64 <= 2.5 %
    census = median_interval(vals, 10)
    assert census["ci"] == [5.5, 5.5] and census["coverage"] == 1.0
    assert median_interval([float("nan"), None], 3)["median"] is None
    with pytest.raises(ValueError):
        median_interval(vals, 5)


def test_median_interval_covers_the_population_median():
    import numpy as np

    from xinc.analysis.estimates import median_interval

    rng = np.random.default_rng(0)
    pop = rng.standard_normal(2000) ** 3  # skewed, heavy-tailed population
    truth = float(np.median(pop))
    hits = sum(lo <= truth <= hi for lo, hi in
               (median_interval(rng.choice(pop, 40, replace=False), pop.size)["ci"] for _ in range(400)))
    assert hits / 400 >= 0.93  # nominal coverage >= 96 % at n = 40; 400 draws leave ~1 % SE
