"""A2 distributed representations on constructed canvases (answers known by hand or by brute force)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from xinc.analysis import run
from xinc.analysis.distributed import distributed_from_canvases, lower_median
from xinc.analysis.registry import AnalysisContext
from xinc.report.plots import draw


def test_disjoint_neurons_each_own_their_pixels():
    K, H, W = 4, 8, 8
    maps = torch.zeros(K, H, W)
    for k in range(K):  # neuron k owns rows 2k, 2k+1 (value 1 + k)
        maps[k, 2 * k:2 * k + 2] = 1.0 + k
    r = distributed_from_canvases(maps, chunk=3, neurons_needed=True)
    assert np.allclose(r["pixels_per_neuron"]["fraction_sorted"], 1 / K)  # each covers its own quarter
    for q in ("0.5", "0.9"):
        assert r["neurons_needed"][q]["median"] == 1 and r["neurons_needed"][q]["censored_fraction"] == 0
    for a in ("0.1", "0.5"):
        t = r["thresholds"][a]
        assert t["mass_above"] >= t["target_mass_above"] - 1e-9
        assert r["neurons_per_pixel"][a]["max_fraction"] <= 1 / K + 1e-12  # one neuron per pixel at most


def test_uniform_canvas_shares_equal_one_over_k():
    K = 10
    maps = torch.full((K, 4, 6), 0.3)
    r = distributed_from_canvases(maps, neurons_needed=True)
    assert r["pixels_per_neuron"]["median_fraction"] == 0.0  # share == 1/K is not > 1/K
    assert r["neurons_needed"]["0.5"]["median"] == 5 and r["neurons_needed"]["0.9"]["median"] == 9


def _brute(maps: np.ndarray, a: float):
    """All values descending, their cumulative mass, and the index where it first reaches (1 - a)."""
    v = np.sort(np.abs(maps).ravel())[::-1].astype(np.float64)
    cum = np.cumsum(v)
    i = int(np.searchsorted(cum, (1 - a) * cum[-1]))
    return v, cum, i


def test_threshold_and_neurons_needed_match_brute_force():
    g = torch.Generator().manual_seed(0)
    T, K, H, W = 2, 12, 6, 10
    maps = torch.randn(T, K, H, W, generator=g) * torch.rand(T, K, 1, 1, generator=g) * 3
    r = distributed_from_canvases(maps, chunk=5, topk=K, neurons_needed=True)
    A = maps.abs().numpy().astype(np.float64)
    total = A.sum()
    for a in (0.1, 0.5):
        t = r["thresholds"][str(a)]
        tau = t["tau"]
        held = A[A > tau].sum() / total
        assert held == pytest.approx(t["mass_above"], rel=1e-9)  # reported mass is the exact mass above τ
        assert (1 - a) - 1e-9 <= held <= (1 - a) + 1e-3  # at least the target, exceeding it by < one fine bin
        v, cum, i = _brute(A, a)
        assert tau < v[i]  # the exact crossing value v[i] is kept
        n_exact = (A > tau).sum(1) / K  # (T, H, W)
        got = np.stack([r["maps"]["n"][a][f] for f in r["frames"]])
        assert np.array_equal(got, n_exact)
    for q in (0.5, 0.9):  # per pixel: fewest neurons whose largest values hold q of H(p)
        need = _needed_brute(A, q)
        got = np.stack([r["maps"]["needed"][q][f] for f in r["frames"]])
        assert np.array_equal(got, need.astype(np.float64))
        assert r["neurons_needed"][str(q)]["median"] == pytest.approx(float(np.median(need)))


def test_chunking_does_not_change_results_and_censoring_is_reported():
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(1, 20, 5, 7, generator=g)
    a = distributed_from_canvases(maps, chunk=3, topk=20, neurons_needed=True)
    b = distributed_from_canvases(maps, chunk=20, topk=20, neurons_needed=True)
    assert a["thresholds"]["0.5"]["tau"] == pytest.approx(b["thresholds"]["0.5"]["tau"], rel=1e-12)
    assert np.array_equal(a["maps"]["needed"][0.9][0], b["maps"]["needed"][0.9][0])



def test_buffered_top_k_merge_equals_brute_force_for_any_chunking():
    """The per-pixel top-k collects chunks in a 2k buffer and merges when full (several merges: K > 2k):
    neurons-needed equals the brute force wherever the top-k suffices, for any chunk size."""
    g = torch.Generator().manual_seed(3)
    maps = torch.rand(1, 40, 5, 7, generator=g) ** 8  # a few large values per pixel: top-7 often suffices
    A = maps.numpy().astype(np.float64)
    runs = [distributed_from_canvases(maps, chunk=c, topk=7, neurons_needed=True) for c in (1, 3, 16, 40)]
    for q in (0.5, 0.9):
        truth = _needed_brute(A, q)[0]
        ref = runs[0]["maps"]["needed"][q][0]
        ok = np.isfinite(ref)
        assert ok.any() and np.array_equal(ref[ok], truth[ok].astype(np.float64))
        for r in runs[1:]:
            assert np.array_equal(r["maps"]["needed"][q][0], ref)


def _needed_brute(A: np.ndarray, q: float) -> np.ndarray:
    """(T, K, H, W) values -> (T, H, W) fewest neurons whose largest values hold q of each pixel's total."""
    s = -np.sort(-A, axis=1)
    cum = np.cumsum(s, axis=1)
    return (cum < q * cum[:, -1:] * (1 - 1e-12)).sum(1) + 1


def test_pixels_beyond_the_top_k_are_bracketed_by_histograms():
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(2, 40, 5, 7, generator=g) ** 2
    A = maps.numpy().astype(np.float64)
    c = distributed_from_canvases(maps, chunk=6, topk=3, neurons_needed=True)  # top-3 cannot hold 50% / 90% here
    for q in (0.5, 0.9):
        rec = c["neurons_needed"][str(q)]
        assert rec["censored_fraction"] == 1.0
        truth = _needed_brute(A, q)
        lo = np.stack([c["maps"]["needed"][q][f] for f in c["frames"]])
        hi = np.stack([c["maps"]["needed_upper"][q][f] for f in c["frames"]])
        assert np.all(lo <= truth) and np.all(truth <= hi)
        assert rec["exact_fraction"] > 0.5  # the sub-binned bracket usually pins the count exactly
        assert rec["median_bounds"][0] <= np.median(truth) <= rec["median_bounds"][1]


@pytest.mark.parametrize("needed", [False, True])
def test_run_writes_figures_tables(tmp_path, needed):
    """Default (paper statistics only) and opted in: results.json, tables, arrays, summary and both figures."""
    g = torch.Generator().manual_seed(2)
    maps = torch.randn(1, 9, 8, 12, generator=g)
    ctx = AnalysisContext(model=None, model_dir=tmp_path, layers=["L"], frames=[0], images=torch.rand(1, 3, 8, 12),
                          out=tmp_path, canvases={"L": maps}, mode="paper", chunk_neurons=4)
    res = run(ctx, ["a2"], {"a2": {"neurons_needed": True}} if needed else None)["a2"]
    sec = res.numbers["paper"]["L"]
    assert set(sec["thresholds"]) == {"0.1", "0.5"} and "tau" in sec["thresholds"]["0.5"]
    assert sec["all_zero_maps"] == 0
    figs = draw("a2", res, tmp_path)
    assert len(figs) == 2 and all(f.path.is_file() and f.path.with_suffix(".pdf").is_file() for f in figs)
    assert (tmp_path / "tables" / "a2_thresholds.csv").is_file() and (tmp_path / "data" / "a2.npz").is_file()
    saved = json.loads((tmp_path / "results.json").read_text())["a2"]["paper"]["L"]
    assert saved["num_neurons"] == 9
    has_maps = {f"paper/L/needed/{q}" in res.arrays for q in ("0.5", "0.9")}
    npp = next(f for f in figs if f.path.name.startswith("neurons_per_pixel"))
    if needed:
        assert res.summary and "50%" in res.summary[0] and has_maps == {True}
        assert saved["neurons_needed"]["0.5"]["median"] >= 1 and "neurons_needed" in saved["method"]
        assert "fewest neurons" in npp.caption
    else:  # said plainly, with the way to turn it on; no neurons-needed arrays, panels or numbers
        assert saved["neurons_needed"]["computed"] is False
        assert "a2.neurons_needed=true" in saved["neurons_needed"]["note"]
        assert "neurons_needed" not in saved["method"] and has_maps == {False}
        assert "not computed (--option a2.neurons_needed=true)" in res.summary[0]
        assert "not computed" in npp.caption


def test_all_zero_maps_counted_and_lower_median(tmp_path):
    maps = torch.rand(2, 6, 5, 7, generator=torch.Generator().manual_seed(1))
    maps[:, 2] = 0  # a dead neuron: zero in both frames
    maps[1, 4] = 0  # zero in one frame only
    res = distributed_from_canvases(maps)
    assert res["all_zero_maps"] == 3 and res["num_maps"] == 12
    assert lower_median(np.array([4.0, 1.0, 3.0, 2.0])) == 2.0 and np.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    ppn = res["pixels_per_neuron"]
    assert ppn["median_lower_fraction"] <= ppn["median_fraction"]


def test_analyze_and_report_without_neurons_needed(tmp_path):
    """`xinc analyze --analyses a2` at defaults on a tiny NeRV, then the HTML report: the page says neurons-needed
    was not computed and how to turn it on; both figures are there."""
    from xinc.cli.main import main
    from xinc.models import NeRV, nerv_config_for_budget, save_model
    from xinc.report.html import build_report

    nc = nerv_config_for_budget(height=16, width=32, num_frames=2, strides=[2, 2], embed="pe_1.25_8", fc_dim=4)
    torch.manual_seed(0)
    save_model(NeRV(nc).eval(), tmp_path / "model")
    run_dir = tmp_path / "run"
    assert main(["analyze", str(tmp_path / "model"), "--out", str(run_dir), "--analyses", "a2", "--frames", "0",
                 "--layers", "block2,head", "--no-progress"]) == 0
    res = json.loads((run_dir / "results.json").read_text())["a2"]
    assert res["paper"]["head"]["neurons_needed"]["computed"] is False
    assert {Path(f["path"]).name for f in res["figures"]} >= {"neurons_per_pixel_paper.png",
                                                               "pixels_per_neuron_paper.png"}
    page = build_report(run_dir, tmp_path / "report.html").read_text()
    assert "not computed (--option a2.neurons_needed=true)" in page
