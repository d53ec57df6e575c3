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
    region_spec,
    removal_sets,
    sample_runs,
)
from xinc.analysis.registry import AnalysisContext, load_result
from xinc.canvas import compute_canvas
from xinc.canvas.reduce import LayerInfo
from xinc.errors import XincError
from xinc.models import NeRV, NeRVConfig
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
    assert any(s.startswith("layer3: both rules predict ablations equally") for s in res.summary)  # exact: a tie
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


def test_a7_sampled_medians_carry_order_statistic_intervals(tmp_path):
    m = tiny_nerv("two_blocks_s2s1_table")
    ctx = _ctx(m, [0, 1], tmp_path, mode="paper")
    res = run(ctx, ["a7"], {"a7": {"neurons": 8, "fractions": "0,1"}}, save=False)["a7"]
    b1 = res.numbers["layers"]["block1"]
    assert b1["num_neurons"] > 8
    r = np.sort(res.arrays["block1/pearson/paper"][np.isfinite(res.arrays["block1/pearson/paper"])])
    # n = 8: P(B <= 0) = 1/256 <= 2.5 % < P(B <= 1) = 9/256, so the interval is [x_(1), x_(8)]
    if r.size == 8:
        assert b1["paper"]["pearson_median_ci95"] == pytest.approx([r[0], r[-1]])
    e = np.sort(res.arrays["block1/rel_error/paper"])
    assert b1["paper"]["rel_error_median_ci95"] == pytest.approx([e[0], e[-1]])
    assert b1["paper"]["pearson_mean_estimate"]["of"] == b1["num_neurons"]
    every = run(ctx, ["a7"], {"a7": {"neurons": 0, "fractions": "0,1"}}, save=False)["a7"]
    head = every.numbers["layers"]["head"]["paper"]
    assert head["rel_error_median_ci95"] == [head["rel_error_median"]] * 2  # a census: no sampling error
    assert "CI" not in " ".join(every.summary)


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


def test_region_spec_and_sample_runs():
    assert region_spec("segment:7") == ("segment", 7) and region_spec("category:car") == ("category", "car")
    assert region_spec("largest") == ("largest", None) and region_spec("1,4,2,8") == ("box", (1, 4, 2, 8))
    for bad in ("segment:x", "category:", "1,2,3", "blob"):
        with pytest.raises(XincError):
            A7Options(region=bad)
    with pytest.raises(XincError):
        A7Options(rank_modes="paper,exact")
    from xinc.analysis.faithfulness import largest_segment
    from xinc.data.panoptic import Segment

    def seg(i, area):
        return Segment(i, 1, "x", True, area, (0, 0, 1, 1))

    # id 1 is largest in frame 0 but absent from frame 1; id 3 covers all of frame 1: id 2 is the one
    labels = {0: (None, [seg(1, 50), seg(2, 10), seg(3, 5)]), 1: (None, [seg(2, 20), seg(3, 100)])}
    assert largest_segment(labels, [0, 1], 10, 10) == 2 and largest_segment(labels, [0], 10, 10) == 1
    assert largest_segment({0: (None, [seg(3, 100)])}, [0], 10, 10) is None
    assert sample_runs(torch.tensor([0, 1, 2, 5, 7, 8])) == [(0, 3), (5, 6), (7, 9)]
    assert sample_runs(torch.tensor([], dtype=torch.long)) == []


def test_a7_sampled_maps_only_match_the_full_canvas(tmp_path):
    """rank_modes=paper: the linear maps of the sampled neurons alone (engine ranges) give the same check as the
    whole linear canvas; the linear |C| ranking is then absent from the curves."""
    m = tiny_nerv("three_blocks_s1s2s3")
    opts = {"neurons": 7, "fractions": "0,0.5,1", "region": "none"}
    ctx = _ctx(m, [0], tmp_path)
    ctx.layers = ["block2"]
    full = run(ctx, ["a7"], {"a7": opts}, save=False)["a7"]
    part = run(ctx, ["a7"], {"a7": {**opts, "rank_modes": "paper"}}, save=False)["a7"]
    for key in ("pearson", "rel_error"):
        assert np.allclose(part.arrays[f"block2/{key}/linear"], full.arrays[f"block2/{key}/linear"], atol=1e-6)
    rec = part.numbers["layers"]["block2"]
    assert rec["linear"]["neurons"] == 7 and not rec["linear"]["ranked"] and rec["paper"]["ranked"]
    assert "contribution-linear" not in rec["deletion_auc"] and "contribution-paper" in rec["deletion_auc"]


@pytest.fixture(scope="module")
def synth_clip(tmp_path_factory):
    from xinc.data.panoptic import load_panoptic_clip
    from xinc.data.synth import generate_synthetic

    d = tmp_path_factory.mktemp("a7synth")
    cfg = generate_synthetic(d / "data", "cityscapes-vps", seed=0, frames=5, size=(32, 64), things=2, flo=False)
    return load_panoptic_clip("cityscapes-vps", d / "data", cfg["video_ids"][0], size=(8, 16))


def test_a7_region_by_panoptic_segment(synth_clip, tmp_path):
    """Region deletion inside a segment of the clip's panoptic labels: largest (and auto), by id, by category."""
    clip = synth_clip
    j = clip.annotated[0]
    cfg = NeRVConfig(height=8, width=16, num_frames=clip.num_frames, embed="pe_1.25_8", fc_hw=[2, 4], fc_dim=4,
                     strides=[2, 2], kernel_sizes=[3, 3], widths=[4, 3], head_ks=3)
    torch.manual_seed(0)
    m = NeRV(cfg).eval()
    ctx = AnalysisContext(model=m, model_dir=None, layers=["block2"], frames=[j], images=clip.frames[[j]],
                          out=tmp_path, mode="paper", seed=1, panoptic=clip)
    segs = sorted(clip.segments[j], key=lambda s: (-s.area, s.id))
    opts = {"neurons": 4, "fractions": "0,0.5,1"}
    for spec in ("largest", "auto"):
        res = run(ctx, ["a7"], {"a7": {**opts, "region": spec}}, save=False)["a7"]
        reg = res.numbers["region"]
        assert reg["kind"] == "segment" and reg["segment_id"] == segs[0].id and segs[0].name in reg["label"]
        assert reg["pixels"][j] == int(clip.mask(j, segs[0].id).sum())
        assert np.array_equal(res.arrays["region_mask"], clip.mask(j, segs[0].id).numpy())
    rec = res.numbers["layers"]["block2"]
    assert set(rec["region_selectivity_db"]) == {"contribution-paper", "random"}
    assert res.arrays["block2/region_in/contribution-paper"][0] == 0  # nothing removed: no change
    small = segs[-1]
    res = run(ctx, ["a7"], {"a7": {**opts, "region": f"segment:{small.id}"}}, save=False)["a7"]
    assert res.numbers["region"]["pixels"][j] == int(clip.mask(j, small.id).sum())
    cat = next(s for s in segs if s.isthing)
    res = run(ctx, ["a7"], {"a7": {**opts, "region": f"category:{cat.name}"}}, save=False)["a7"]
    n_cat = sum(int(clip.mask(j, s.id).sum()) for s in segs if s.category_id == cat.category_id)
    assert res.numbers["region"]["kind"] == "category" and res.numbers["region"]["pixels"][j] == n_cat
    figs = draw("a7", res, tmp_path)
    assert any(f.path.name.startswith("region") for f in figs)
    for bad in ("segment:999999999", "category:unicorn"):
        with pytest.raises(XincError, match="covers 0 of"):
            run(ctx, ["a7"], {"a7": {**opts, "region": bad}}, save=False)
    ctx.panoptic = None
    with pytest.raises(XincError, match="no panoptic labels"):
        run(ctx, ["a7"], {"a7": {**opts, "region": "largest"}}, save=False)
    assert run(ctx, ["a7"], {"a7": {**opts, "region": "auto"}}, save=False)["a7"].numbers["region"]["kind"] == "box"
