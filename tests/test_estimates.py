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


def _cost(layer: str, maps: int, pixels: int):
    from xinc.canvas.cost import CanvasCost

    return CanvasCost(layer, "paper", maps, maps * pixels * 4, 1.0, maps)


def test_auto_frame_count_is_a_value_count():
    from xinc.analysis.runner import auto_frame_count, canvas_values

    costs = [_cost("block1", 100, 1000), _cost("head", 3, 1000)]  # 103,000 values per frame
    assert canvas_values(costs, 10, ["a1"], memo_mb=0) == 103_000 * 10 * 2  # two passes without the memo
    assert canvas_values(costs, 10, ["a1", "a2"], memo_mb=0) == 103_000 * 10 * 4  # A2 streams 4 times
    assert canvas_values(costs, 10, ["a1", "a2"], memo_mb=5) == 103_000 * 10  # the memo holds 4.1 MB: once
    assert canvas_values(costs, 10, ["a1", "a2"], memo_mb=1) == 100_000 * 10 * 4 + 3_000 * 10  # head's 120 kB only
    assert canvas_values(costs, 10, ["a7"], memo_mb=0) == 0  # A7 samples its own maps
    assert auto_frame_count(costs, 10, ["a1", "a2"], 0, budget=103_000 * 40) == 10  # fits: every frame
    assert auto_frame_count(costs, 10, ["a1", "a2"], 0, budget=103_000 * 4 * 6.5) == 6  # the most that fit
    assert auto_frame_count(costs, 10, ["a1", "a2"], 0, budget=1.0) == 2  # never below 2 (an SE needs two)
    assert auto_frame_count(costs, 2, ["a1", "a2"], 0, budget=1.0) == 2


@pytest.mark.parametrize("extra, sampled", [([], 3), (["--sample-frames", "all"], None), (["--frames", "0-7"], None),
                                            (["--sample-frames", "5"], 5)])
def test_analyze_sample_frames_auto(tmp_path, capsys, monkeypatch, extra, sampled):
    import xinc.analysis.runner as runner

    nc = nerv_config_for_budget(height=32, width=32, num_frames=8, strides=[2, 2], embed="pe_1.25_8", fc_dim=4)
    torch.manual_seed(0)
    save_model(NeRV(nc), tmp_path / "model")  # no recorded data: the model's own 8 frames
    args = ["analyze", str(tmp_path / "model"), "--analyses", "a1", "--layers", "head", "--mode", "paper",
            "--no-progress", "--memo-mb", "0"]
    from xinc.models.io import load_model

    per_frame = runner.canvas_values(runner.probe_costs(load_model(tmp_path / "model", "cpu"), ["head"], ["paper"], 0),
                                     1, ["a1"], 0)
    monkeypatch.setattr(runner, "AUTO_VALUES", 3.5 * per_frame)  # room for 3 of the 8 frames
    out = tmp_path / "run"
    assert main([*args, *extra, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    r = json.loads((out / "results.json").read_text())
    samp = r["data"].get("sampling")
    if sampled is None:
        assert samp is None and r["data"]["frames"] == list(range(8))
        assert "--sample-frames auto" not in err
        return
    assert samp["n"] == sampled and samp["of"] > sampled and len(r["data"]["frames"]) == sampled
    auto = "--sample-frames auto" in err
    assert auto == (not extra) and samp["chosen_by"] == ("--sample-frames auto" if auto else "--sample-frames")
    if auto:
        assert f"{sampled} of the {samp['of']} frames" in err and "--sample-frames all" in err and "cuda" in err
        assert "estimate" in r["a1"]["layers"]["paper"]["head"]  # the sample's error bounds
        assert main(["report", str(out), "--out", str(tmp_path / "r.html")]) == 0
        assert "chosen by --sample-frames auto" in (tmp_path / "r.html").read_text()


def test_auto_prints_each_skip_once(tmp_path, capsys):
    nc = nerv_config_for_budget(height=32, width=32, num_frames=4, strides=[2, 2], embed="pe_1.25_8", fc_dim=4)
    torch.manual_seed(0)
    save_model(NeRV(nc), tmp_path / "model")
    assert main(["analyze", str(tmp_path / "model"), "--analyses", "all", "--layers", "head", "--mode", "paper",
                 "--no-progress", "--out", str(tmp_path / "run"), "--option", "a7.neurons=2"]) == 0
    err = capsys.readouterr().err
    assert err.count("skipping a3") == 1  # no panoptic labels: said once, not again by --sample-frames auto
