"""A7 faithfulness: the analysis on tiny models, exact layers scored as exact, curves shaped as promised."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from test_canvas import tiny_ffn, tiny_nerv
from xinc.analysis import run
from xinc.analysis.faithfulness import (
    A7Options,
    AblationCheck,
    auc,
    parse_fractions,
    pearson_from_sums,
    region_box,
    removal_sets,
)
from xinc.analysis.registry import AnalysisContext, load_result
from xinc.canvas import compute_canvas
from xinc.canvas.reduce import LayerInfo
from xinc.errors import XincError
from xinc.report.plots import draw


def _ctx(model, frames, tmp_path, mode="both"):
    with torch.no_grad():
        if hasattr(model, "blocks"):
            images = torch.stack([model([f])[0] for f in frames]).clamp(0, 1)
        else:
            images = model.render()[None].clamp(0, 1)
    images = (images + 0.02 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    return AnalysisContext(model=model, model_dir=None, layers=list(model.layer_names), frames=frames,
                           images=images, out=tmp_path, mode=mode, seed=3)


def test_a7_on_ffn_exact_layer_scores_perfect_and_results_saved(tmp_path):
    m = tiny_ffn("relu", 3)
    ctx = _ctx(m, [0], tmp_path)
    res = run(ctx, ["a7"], {"a7": {"neurons": 0, "fractions": "0,0.25,0.5,1", "region": "1,4,2,8"}})["a7"]
    last = res.numbers["layers"]["layer3"]
    for mode in ("paper", "linear"):  # the ablation change is the map: r = 1, zero error
        assert last[mode]["pearson_median"] == pytest.approx(1.0, abs=1e-6)
        assert last[mode]["rel_error_median"] < 1e-5 and last[mode]["maps_sum_exact"]
    first = res.numbers["layers"]["layer1"]
    assert first["paper"]["rel_error_median"] > 0.05 and not first["paper"]["maps_sum_exact"]
    assert set(first["deletion_auc"]) == {"contribution-paper", "contribution-linear", "magnitude", "random"}
    assert res.arrays["layer2/deletion/random"].shape == (4,)
    # deletion at 0 removes nothing and insertion at 1 keeps everything: both are the model's own PSNR
    assert res.arrays["layer2/deletion/magnitude"][0] == pytest.approx(res.arrays["layer2/insertion/magnitude"][-1])
    assert res.arrays["layer2/region_in/random"].shape == (4,) and res.arrays["layer2/region_in/random"][0] == 0
    assert any("predicts ablations better" in s for s in res.summary)
    back = load_result(tmp_path, "a7")
    assert back.numbers["layers"]["layer3"]["paper"]["maps_sum_exact"]
    assert (tmp_path / "tables" / "a7_faithfulness.csv").is_file()
    figs = draw("a7", back, tmp_path)
    assert figs and all(f.path.is_file() for f in figs)


def test_a7_on_nerv_head_exact_blocks_not(tmp_path):
    m = tiny_nerv("two_blocks_s2s1_table")
    ctx = _ctx(m, [0, 1, 2], tmp_path, mode="paper")
    res = run(ctx, ["a7"], {"a7": {"neurons": 5, "frames": 2, "batch": 2, "fractions": "0,0.5,1"}}, save=False)["a7"]
    assert res.numbers["frames"] == [0, 2]
    head, b1 = res.numbers["layers"]["head"], res.numbers["layers"]["block1"]
    assert head["paper"]["pearson_median"] == pytest.approx(1.0, abs=1e-5) and head["paper"]["neurons"] == 5
    assert b1["paper"]["rel_error_median"] > 1e-2 and "linear" not in b1
    assert res.numbers["region_box"] == list(region_box("auto", m.config.height, m.config.width)) or \
        tuple(res.numbers["region_box"]) == region_box("auto", m.config.height, m.config.width)


def test_ablation_check_catches_a_wrong_map():
    """Fed the true maps of an exact layer it reports r = 1 and no error; one map scaled by 1.5 is caught."""
    m = tiny_nerv("one_block_s3_k5")
    tr = {0: m.trace([0])}
    cv = compute_canvas(m, "head", 0)
    K = cv.maps.shape[0]
    info = LayerInfo(name="head", num_neurons=K, height=cv.maps.shape[1], width=cv.maps.shape[2], exact=True,
                     rule="conv-head")
    for wrong in (False, True):
        maps = cv.maps.clone()
        if wrong:
            maps[3] *= 1.5
        chk = AblationCheck(m, "head", tr, torch.arange(K), batch=4)
        chk.begin_frame(info, 0)
        chk.update(0, maps[:7])
        chk.update(7, maps[7:])
        chk.end_frame()
        r = chk.result()
        assert r["rel_error"][3] > 0.4 if wrong else r["rel_error"].max() < 1e-5
        assert torch.nanmean(r["pearson"]).item() == pytest.approx(1.0, abs=1e-5)  # scale-free: r stays 1


def test_helpers():
    assert np.allclose(parse_fractions("0.5, 0, 1"), [0, 0.5, 1])
    for bad in ("0", "0,2", "a,b"):
        with pytest.raises(XincError):
            parse_fractions(bad)
    with pytest.raises(XincError):
        region_box("0,10,0,10", 10, 10)  # the whole image has no outside
    with pytest.raises(XincError):
        A7Options(neurons=-1)
    assert auc(np.array([0, 0.5, 1.0]), np.array([10.0, 20.0, 30.0])) == pytest.approx(20.0)
    sets = removal_sets(torch.tensor([2, 0, 1, 3]), np.array([0, 0.5, 1]))
    assert sets.tolist() == [[False] * 4, [True, False, True, False], [True] * 4]
    ins = removal_sets(torch.tensor([2, 0, 1, 3]), np.array([0, 0.5]), insertion=True)
    assert ins.tolist() == [[True] * 4, [False, True, False, True]]
    c = torch.randn(2, 50, dtype=torch.float64)
    d = torch.stack([2 * c[0] + 1, -c[1]])
    s = torch.stack([torch.full((2,), 50.0, dtype=torch.float64), c.sum(1), d.sum(1), (c * c).sum(1),
                     (d * d).sum(1), (c * d).sum(1)], 1)
    assert pearson_from_sums(s).tolist() == pytest.approx([1.0, -1.0])
