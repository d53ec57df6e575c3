"""Analysis statistics and PSNR against answers derived here by hand or by explicit formulas (A1-A5, metrics).

Each hand-worked case states its arithmetic in the comments, so a reader can check the expected numbers
without running any xinc code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from xinc.analysis import grouping as gr
from xinc.analysis.distributed import distributed_from_canvases
from xinc.analysis.intensity import a1_correlations, a1_maps, correlations, edge_map, intensity_map
from xinc.analysis.motion import accumulate_change, score_change
from xinc.analysis.objects import normalise_per_neuron, objects_from_canvases, things_stuff, variant_cells
from xinc.analysis.registry import variants
from xinc.analysis.selectivity import build_groupings, delta_variance, selectivity_from_canvases, summarise_variances
from xinc.data.panoptic import Segment
from xinc.train.metrics import mean_psnr, psnr_8bit, psnr_float, to_8bit

PAPER_V, LINEAR_V = (v for v, _ in variants("both"))  # the statistic variants' names (paper-faithful, corrected)


# ------------------------------------------------------------------ A1


def pearson_by_formula(x, y) -> float:
    x, y = np.ravel(x) - np.mean(x), np.ravel(y) - np.mean(y)
    return float((x * y).sum() / math.sqrt((x * x).sum() * (y * y).sum()))


def test_a1_correlations_are_pearson_and_spearman():
    """Non-monotone, tied, skewed data where Pearson, Spearman and 'Pearson on ranks' all differ."""
    rng = np.random.default_rng(3)
    x = rng.exponential(size=(9, 11))
    y = x**3 + rng.normal(0, 0.5, size=x.shape)
    y[0, :4] = 2.0  # ties
    got = correlations(x, y)
    assert got["pearson"] == pytest.approx(pearson_by_formula(x, y), rel=1e-10)
    assert got["pearson"] == pytest.approx(stats.pearsonr(x.ravel(), y.ravel())[0], rel=1e-10)
    rx, ry = stats.rankdata(x.ravel()), stats.rankdata(y.ravel())
    assert got["spearman"] == pytest.approx(pearson_by_formula(rx, ry), rel=1e-10)
    assert abs(got["pearson"] - got["spearman"]) > 0.01  # the two are really different here
    assert correlations(np.ones((3, 3)), y[:3, :3]) == {"pearson": None, "spearman": None}


def sobel_by_hand(g: np.ndarray) -> np.ndarray:
    """|∇| with the 3x3 Sobel pair ([1,2,1]/4 smoothing x central difference), reflected borders, sqrt(mean of
    the two squared responses) (skimage's magnitude convention)."""
    p = np.pad(g, 1, mode="symmetric")
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:] - p[:-2, :-2] - 2 * p[:-2, 1:-1] - p[:-2, 2:]) / 4
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:] - p[:-2, :-2] - 2 * p[1:-1, :-2] - p[2:, :-2]) / 4
    return np.sqrt((gx**2 + gy**2) / 2)


def crafted_image() -> np.ndarray:
    """(3, 6, 7): a bright square on a ramp, channels with different ranges (and one value above 1)."""
    img = np.zeros((3, 6, 7))
    img[0] = np.linspace(0, 0.5, 7)[None]
    img[1, 1:4, 2:5] = 0.9
    img[2] = 0.2
    img[2, 4, 6] = 1.3  # clipped to 1 for the grey image
    return img


def test_a1_maps_intensity_and_sobel_by_hand():
    img = crafted_image()
    grey = 0.2125 * img[0] + 0.7154 * img[1] + 0.0721 * np.clip(img[2], 0, 1)  # ITU-R 709 luma of rgb2gray
    np.testing.assert_allclose(edge_map(torch.tensor(img)), sobel_by_hand(grey), rtol=1e-6, atol=1e-12)
    lo, hi = img.min(), img.max()  # N = min-max over the whole RGB image, then summed over channels
    np.testing.assert_allclose(intensity_map(img), ((img - lo) / (hi - lo)).sum(0), rtol=1e-12)
    heat = np.arange(42, dtype=np.float64).reshape(6, 7) % 5
    m = a1_maps(heat, img)
    inten = ((img - lo) / (hi - lo)).sum(0)
    np.testing.assert_allclose(m["difference"], heat / 4 - (inten - inten.min()) / np.ptp(inten), atol=1e-12)
    got = a1_correlations(heat, img)
    assert got["pearson_edges"] == pytest.approx(pearson_by_formula(heat, sobel_by_hand(grey)), rel=1e-9)
    assert got["spearman_intensity"] == pytest.approx(stats.spearmanr(heat.ravel(), inten.ravel())[0], rel=1e-9)


# ------------------------------------------------------------------ A2


def a2_case() -> torch.Tensor:
    """K = 3 neurons on a 1x4 frame (signed maps: A = |C|).
    n0: [4, 0, 1, 0.5]   n1: [0, 3, 0.5, 0.9]   n2: [0, 1, 2.5, 1.6]   H = [4, 4, 4, 3], total mass 15."""
    A = torch.tensor([[4, 0, 1, 0.5], [0, 3, 0.5, 0.9], [0, 1, 2.5, 1.6]], dtype=torch.float32)
    return (A * torch.tensor([[1, -1, 1, 1]])).reshape(3, 1, 4)  # signs must not matter


def test_a2_hand_worked():
    out = distributed_from_canvases(a2_case(), bins=64, sub_bins=64, neurons_needed=True)
    # shares > 1/3: p0 -> n0 (4/4); p1 -> n1 (3/4); p2 -> n2 (2.5/4); p3 -> n2 (1.6/3; 0.9/3 = 0.3 is not > 1/3)
    # counts n0 1, n1 1, n2 2 of 4 pixels
    ppn = out["pixels_per_neuron"]
    np.testing.assert_allclose(ppn["fraction_sorted"], [0.5, 0.25, 0.25])
    assert ppn["mean_fraction"] == pytest.approx(1 / 3) and ppn["median_fraction"] == pytest.approx(0.25)
    # values sorted: 4, 3, 2.5, 1.6, 1, 1, 0.9, 0.5, 0.5 (sum 15)
    # a = 0.5: hold 7.5 -> 4 + 3 + 2.5 = 9.5, tau just below 2.5; n(p) = [1, 1, 1, 0] / 3
    # a = 0.1: hold 13.5 -> ... + 1.6 + 1 + 1 + 0.9 = 14.0, tau just below 0.9; n(p) = [1, 2, 2, 2] / 3
    for a, held, n in ((0.5, 9.5, [1, 1, 1, 0]), (0.1, 14.0, [1, 2, 2, 2])):
        th = out["thresholds"][str(a)]
        assert th["mass_above"] == pytest.approx(held / 15, rel=1e-6)
        np.testing.assert_allclose(out["maps"]["n"][a][0].ravel(), np.array(n) / 3, rtol=1e-12)
    # neurons needed for half of H(p): one everywhere; for 0.9 H(p): p0 1 (4), p1 2 (3+1), p2 3 (2.5+1+0.5),
    # p3 3 (1.6+0.9 = 2.5 < 2.7)
    np.testing.assert_array_equal(out["maps"]["needed"][0.5][0].ravel(), [1, 1, 1, 1])
    np.testing.assert_array_equal(out["maps"]["needed"][0.9][0].ravel(), [1, 2, 3, 3])
    assert out["neurons_needed"]["0.9"]["median"] == 2.5


# ------------------------------------------------------------------ A3


def test_a3_hand_worked():
    """Frame 2x3, ids [[0, 5, 5], [7, 7, 7]]: unlabelled (1 px), thing 5 (2 px), stuff 7 (3 px).
    n0 |C| = [[6, 2, 4], [1, 1, 4]] -> means: unlabelled 6, seg5 3, seg7 2, other (5 labelled px) 12/5.
    n1 |C| = [[0, 1, 1], [3, 0, 0]] -> means: 0, 1, 1, other 5/5 = 1."""
    maps = torch.tensor([[[6, -2, 4], [1, 1, -4]], [[0, 1, 1], [3, 0, 0]]], dtype=torch.float32)[None]
    ids = np.array([[0, 5, 5], [7, 7, 7]])
    segs = [Segment(5, 13, "car", True, 2, (1, 0, 2, 1)), Segment(7, 0, "road", False, 3, (0, 1, 3, 1))]
    values, cells = objects_from_canvases(maps, [ids], [segs])
    by = {(c.kind, c.segment_id): j for j, c in enumerate(cells)}
    col = [by[("unlabelled", 0)], by[("segment", 5)], by[("segment", 7)], by[("other", -1)]]
    np.testing.assert_allclose(values[:, col], [[6, 3, 2, 12 / 5], [0, 1, 1, 1]], rtol=1e-6)
    norm = normalise_per_neuron(values)
    # n0 min 2 max 6: (6, 3, 2, 2.4) -> (1, .25, 0, .1); n1 min 0 max 1: (0, 1, 1, 1)
    np.testing.assert_allclose(norm[:, col], [[1, 0.25, 0, 0.1], [0, 1, 1, 1]], atol=1e-6)
    ts = things_stuff(norm, cells)
    assert ts["summary"]["mean_things"] == pytest.approx((0.25 + 1) / 2)
    assert ts["summary"]["mean_stuff"] == pytest.approx((0 + 1) / 2)
    assert ts["summary"]["fraction_neurons_prefer_things"] == pytest.approx(0.5)  # n0 .25 > 0; n1 1 = 1
    # faithful keeps segments + the union 'other'; corrected keeps segments + the real unlabelled area
    kinds = [c.kind for c in cells]
    assert sorted(k for k, keep in zip(kinds, variant_cells(cells, PAPER_V)) if keep) == ["other", "segment",
                                                                                         "segment"]
    assert sorted(k for k, keep in zip(kinds, variant_cells(cells, LINEAR_V)) if keep) == ["segment", "segment",
                                                                                          "unlabelled"]


# ------------------------------------------------------------------ A4


def test_a4_change_map_and_scores_by_formula():
    """M(p) = Σ_k | |C_k^t| − |C_k^{t−1}| |; AUROC = P(score of a moving pixel > a static one), ties 1/2."""
    prev = torch.tensor([[[1.0, -2.0, 0.0, 3.0]], [[0.5, 0.5, -1.0, 0.0]]])
    nxt = torch.tensor([[[-1.0, 1.0, 2.0, 3.0]], [[0.0, 1.5, 1.0, -2.0]]])
    # n0: | |-1|-1 | = 0, |1-2| = 1, |2-0| = 2, 0;  n1: 0.5, 1, 0, 2  ->  M = [0.5, 2, 2, 2]
    M = accumulate_change(iter([(0, prev[:1]), (1, prev[1:])]), iter([(0, nxt[:1]), (1, nxt[1:])]))
    np.testing.assert_allclose(M.numpy().ravel(), [0.5, 2, 2, 2])
    change = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.35])
    mag = np.array([0.0, 1.0, 0.0, 3.0, 2.0, 0.5])
    s = score_change(change, mag, threshold=0.25)
    moving, static = change[mag > 0.25], change[mag <= 0.25]
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in moving for b in static)
    assert s["auroc"] == pytest.approx(wins / (len(moving) * len(static)))
    assert s["pearson"] == pytest.approx(pearson_by_formula(change, mag))
    assert s["spearman"] == pytest.approx(pearson_by_formula(stats.rankdata(change), stats.rankdata(mag)))
    assert s["moving_fraction"] == pytest.approx(4 / 6)


# ------------------------------------------------------------------ A5


def test_a5_delta_variance_hand_worked():
    """Groups g0 = {p0}, g1 = {p1, p2}, g2 = {p3}.
    n0 A = [1, 2, 3, 6], T = 12: E = (3, 6, 3), A_g = (1, 5, 6), δ = (2/3, 1/6, 1), V = 19/108.
    n1 C = [-2, 0, 2, 0]: T = 4, E = (1, 2, 1), A_g = (2, 2, 0), δ = (1, 0, 1), V = 1/3.
    n2 all zero: T = 0 -> NaN."""
    maps = torch.tensor([[[1.0, 2, 3, 6]], [[-2.0, 0, 2, 0]], [[0.0, 0, 0, 0]]])
    labels = torch.tensor([[0, 1, 1, 2]])
    for lab in (labels, gr.one_hot(labels) if hasattr(gr, "one_hot") else labels):
        V = delta_variance(maps, lab, 3)
        assert V[0].item() == pytest.approx(19 / 108) and V[1].item() == pytest.approx(1 / 3)
        assert math.isnan(V[2].item())
    V = selectivity_from_canvases(maps[None], {0: {"g": labels}})
    assert V["g"][0][0].item() == pytest.approx(19 / 108)


def test_a5_null_model_and_scores_hand_worked():
    """raw = ln √V̄; corrected score = raw − ln √(mean over null partitions of V̄): V = 0.04 vs nulls 0.01 and
    0.03 -> ln(0.2) − ln(√0.02) > 0 (more selective than chance)."""
    V = {"cells": {0: torch.tensor([0.04, 0.01], dtype=torch.float64), 1: torch.tensor([0.04, 0.01],
                                                                                      dtype=torch.float64)},
         "cells/null0": {0: torch.tensor([0.01, 0.04], dtype=torch.float64)},
         "cells/null1": {0: torch.tensor([0.03, 0.04], dtype=torch.float64)}}
    paper = summarise_variances(V, PAPER_V)
    np.testing.assert_allclose(paper["raw"]["cells"], [math.log(0.2), math.log(0.1)])
    lin = summarise_variances(V, LINEAR_V)
    np.testing.assert_allclose(lin["null"]["cells"], [0.5 * math.log(0.02), 0.5 * math.log(0.04)])
    np.testing.assert_allclose(lin["excess"]["cells"], [math.log(0.2) - 0.5 * math.log(0.02),
                                                        math.log(0.1) - 0.5 * math.log(0.04)])
    assert lin["excess"]["cells"][0] > 0 > lin["excess"]["cells"][1]


def test_a5_groupings_cells_and_null_partitions():
    """Contiguous 2x2 cells of a 4x4 grid are quadrants; the faithful lattice is (y mod 2, x mod 2); every
    null partition keeps its grouping's exact group sizes but moves pixels."""
    quadrants = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    lattice = np.array([[0, 1, 0, 1], [2, 3, 2, 3], [0, 1, 0, 1], [2, 3, 2, 3]])
    np.testing.assert_array_equal(gr.cell_labels(4, 4, 2, "contiguous").numpy(), quadrants)
    np.testing.assert_array_equal(gr.cell_labels(4, 4, 2, "lattice").numpy(), lattice)
    img = torch.rand(3, 12, 16, generator=torch.Generator().manual_seed(0))
    ids = torch.zeros(12, 16, dtype=torch.int64)
    ids[2:7, 3:9] = 4
    groups = build_groupings(img, ids, LINEAR_V, seed=1, linear_cells=2, null=2)
    for name in ("segments", "rgb_kmeans", "cells"):
        base = groups[name]
        for r in range(2):
            null = groups[f"{name}/null{r}"]
            np.testing.assert_array_equal(torch.bincount(null.ravel()).numpy(), torch.bincount(base.ravel()).numpy())
            assert not torch.equal(null, base)
    assert not any("/null" in n for n in build_groupings(img, ids, PAPER_V, seed=1, paper_k=3))


# ------------------------------------------------------------------ PSNR


def test_psnr_variants_by_formula_where_rounding_matters():
    """Frame 0: errors of 0.3/255 vanish after 8-bit rounding (PSNR_8bit = inf) but not in float.
    Frame 1: +0.6/255 rounds to +1/255; values above 1 / below 0 are clamped for 8-bit only."""
    levels = torch.arange(0, 256, 17, dtype=torch.float64).reshape(1, 4, 4) / 255  # exact 8-bit levels
    target = torch.cat([levels, levels.flip(-1), levels.transpose(-1, -2)]).unsqueeze(0).repeat(2, 1, 1, 1)
    pred = target.clone()
    pred[0] += 0.3 / 255
    pred[1] += 0.6 / 255
    pred[1, 0, 0, 0] = 1.25  # target 0 there: error 1.25 in float, 1.0 after clamping
    t, p = target.numpy(), pred.numpy()
    mse_f = ((p - t) ** 2).reshape(2, -1).mean(1)
    p8 = np.round(np.clip(p, 0, 1) * 255) / 255
    mse_8 = ((p8 - t) ** 2).reshape(2, -1).mean(1)
    assert mse_8[0] == 0 and mse_8[1] > 0
    np.testing.assert_allclose(psnr_float(pred.float(), target.float()).numpy(), 10 * np.log10(1 / mse_f), rtol=1e-5)
    got8 = psnr_8bit(pred.float(), target.float()).numpy()
    assert math.isinf(got8[0]) and got8[0] > 0
    assert got8[1] == pytest.approx(10 * np.log10(1 / mse_8[1]), rel=1e-5)
    np.testing.assert_array_equal(to_8bit(pred).numpy(), p8)
    frames = torch.tensor([30.0, 40.0])  # per-frame mean, not the PSNR of the mean MSE
    assert mean_psnr(frames) == pytest.approx(35.0)
