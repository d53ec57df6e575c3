"""A5 selectivity and the groupings, on constructed canvases whose answer is known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from xinc.analysis import grouping as gr
from xinc.analysis import load_result, run
from xinc.analysis.registry import AnalysisContext
from xinc.analysis.selectivity import (
    bootstrap_ordering,
    build_groupings,
    delta_variance,
    selectivity_from_canvases,
)
from xinc.report.plots import draw


def test_uniform_neuron_has_zero_variance():
    maps = torch.full((3, 8, 16), 2.0)
    V = delta_variance(maps, gr.cell_labels(8, 16, 4, "contiguous"))
    assert torch.allclose(V, torch.zeros(3, dtype=torch.float64), atol=1e-12)


def test_neuron_inside_one_group():
    # G equal groups, all mass in one: δ_in = G-1, δ_out = 1 -> V = (G-2)^2 / G (worked out by hand)
    lab = gr.cell_labels(8, 16, 2, "contiguous")  # G = 4 equal cells
    maps = (lab == 2).to(torch.float32)[None] * 3.0
    G = 4
    V = delta_variance(maps, lab)
    assert float(V[0]) == pytest.approx((G - 2) ** 2 / G, rel=1e-12)


def test_dead_neuron_is_nan():
    V = delta_variance(torch.zeros(1, 4, 4), gr.cell_labels(4, 4, 2))
    assert math.isnan(float(V[0]))


def _parity_weights(r: int = 2, k: int = 3) -> np.ndarray:
    """Paper block-3 neuron: constant on one PixelShuffle parity class, then the head's k x k box filter.

    Weight of each parity class (relative position) = (# class pixels in the k x k window) / k^2.
    """
    w = np.zeros((r, r))
    half = k // 2
    for s1 in range(r):
        for s2 in range(r):
            rows = sum(1 for d in range(-half, half + 1) if (s1 + d) % r == 0)
            cols = sum(1 for d in range(-half, half + 1) if (s2 + d) % r == 0)
            w[s1, s2] = rows * cols / k**2
    return w


def _parity_canvas(H: int, W: int, r: int = 2, k: int = 3) -> torch.Tensor:
    """Two neurons: the box-filtered parity pattern (circular, no border effect), one scaled and shifted class."""
    base = torch.zeros(H, W)
    base[::r, ::r] = 1.0
    kern = torch.ones(1, 1, k, k) / k**2
    padded = torch.nn.functional.pad(base[None, None], (k // 2,) * 4, mode="circular")
    m0 = torch.nn.functional.conv2d(padded, kern)[0, 0]
    m1 = 5.0 * torch.roll(m0, shifts=(1, 0), dims=(0, 1))
    return torch.stack([m0, m1])


def test_lattice_parity_constant_derived_from_definitions():
    H, W, n = 32, 64, 8
    G = n * n
    w = _parity_weights()
    assert sorted((w * 9).ravel().tolist()) == [1, 2, 2, 4]
    # every cell of an even-stride lattice lies inside one parity class: A/E = w_s / mean(w)
    delta = np.abs(w.ravel() / w.mean() - 1)  # 5/9, 1/9, 1/9, 7/9
    pop = float(np.mean((delta - delta.mean()) ** 2))  # G/4 cells of each class
    expected = pop * G / (G - 1)  # unbiased variance over the G cells
    assert pop == pytest.approx(1 / 12, rel=1e-12)
    maps = _parity_canvas(H, W)
    V_lat = delta_variance(maps, gr.cell_labels(H, W, n, "lattice"))
    assert torch.allclose(V_lat, torch.full_like(V_lat, expected), rtol=1e-6)  # same for every neuron
    # contiguous cells (even sizes) hold every parity class equally: no spurious variance at all
    V_con = delta_variance(maps, gr.cell_labels(H, W, n // 2, "contiguous"))
    assert float(V_con.abs().max()) < 1e-10
    # the SPEC's quoted "≈0.24" is the same constant for the signed deviation (A − E)/E:
    sdelta = w.ravel() / w.mean() - 1
    s_expected = float(np.mean(sdelta**2)) * G / (G - 1)  # = 19/81 * G/(G-1) = 0.238 for 8x8
    V_sig = delta_variance(maps, gr.cell_labels(H, W, n, "lattice"), signed=True)
    assert float(V_sig[0]) == pytest.approx(s_expected, rel=1e-6)
    assert s_expected == pytest.approx(19 / 81 * G / (G - 1), rel=1e-12)
    assert round(s_expected, 2) == 0.24


def test_cells_and_partitions():
    lat = gr.cell_labels(8, 16, 4, "lattice")
    y, x = torch.meshgrid(torch.arange(8), torch.arange(16), indexing="ij")
    assert torch.equal(lat, (y % 4) * 4 + x % 4)
    con = gr.cell_labels(8, 16, 4, "contiguous")
    assert torch.equal(con, (y // 2) * 4 + x // 4)
    rnd = gr.random_partition_labels(con, seed=3)
    assert torch.equal(torch.bincount(rnd.ravel()), torch.bincount(con.ravel()))
    assert torch.equal(rnd, gr.random_partition_labels(con, seed=3))
    assert not torch.equal(rnd, gr.random_partition_labels(con, seed=4))


def test_gabor_banks():
    full, faithful = gr.gabor_bank("full"), gr.gabor_bank("faithful")
    assert len(full) == 24 and len(faithful) == 6
    assert {p["theta"] for p, _ in faithful} == {0.0}
    assert {(p["frequency"], p["sigma"]) for p, _ in full} == {(f, s) for f in (0.05, 0.25, 0.5) for s in (1, 3)}
    img = torch.ones(3, 24, 24)  # constant white: interior response = 255 * sum(real kernel)
    feats = gr.gabor_features(img, "faithful")
    for i, (_, kern) in enumerate(faithful):
        expect = int(np.trunc(255.0 * np.real(kern).sum())) % 256
        assert feats[12, 12, i] == expect  # uint8 wrap-around, not saturation
    assert feats.min() >= 0 and feats.max() <= 255
    assert gr.gabor_features(img, "full").shape == (24, 24, 24)


def test_kmeans_labels_seeded_and_compact():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 12, 20, generator=g)
    a = gr.gabor_kmeans_labels(img, 5, seed=1, bank="full")
    assert a.shape == (12, 20) and a.dtype == torch.int64
    assert torch.equal(a, gr.gabor_kmeans_labels(img, 5, seed=1, bank="full"))
    assert set(a.unique().tolist()) == set(range(gr.num_groups(a)))
    b = gr.rgb_kmeans_labels(img, 4, seed=0)
    assert gr.num_groups(b) == 4


def test_bootstrap_ordering():
    rng = np.random.default_rng(0)
    scores = {"hi": rng.normal(1.0, 0.1, 200), "lo": rng.normal(0.0, 0.1, 200)}
    o = bootstrap_ordering(scores, n_boot=200, seed=0)
    assert o["order"] == ["hi", "lo"] and o["confidence"] == 1.0
    assert o["ci95"]["hi"][0] < o["medians"]["hi"] < o["ci95"]["hi"][1]
    same = bootstrap_ordering({"a": rng.normal(0, 1, 300), "b": rng.normal(0, 1, 300)}, n_boot=200, seed=0)
    assert 0.0 < same["confidence"] < 1.0
    assert bootstrap_ordering(scores, n_boot=200, seed=0) == o  # seeded


def test_streamed_equals_whole_and_chunk_invariant():
    g = torch.Generator().manual_seed(1)
    maps = torch.randn(2, 7, 8, 16, generator=g)
    lab = {0: {"cells": gr.cell_labels(8, 16, 4)}, 1: {"cells": gr.cell_labels(8, 16, 4, "lattice")}}
    a = selectivity_from_canvases(maps, lab, chunk=3)
    b = selectivity_from_canvases(maps, lab, chunk=7)
    assert torch.allclose(a["cells"][0], b["cells"][0]) and torch.allclose(a["cells"][1], b["cells"][1])
    assert torch.allclose(a["cells"][0], delta_variance(maps[0], lab[0]["cells"]))


def test_run_on_given_canvases(tmp_path):
    g = torch.Generator().manual_seed(2)
    img = torch.rand(1, 3, 16, 32, generator=g)
    maps = torch.rand(1, 10, 16, 32, generator=g) ** 3
    ids = torch.zeros(16, 32, dtype=torch.int64)
    ids[:8] = 3
    ids[8:, 16:] = 9
    clip = _clip(img, ids)
    ctx = AnalysisContext(model=None, model_dir=tmp_path, layers=["L"], frames=[0], images=img, out=tmp_path,
                          panoptic=clip, canvases={"L": maps}, mode="both",
                          )
    res = run(ctx, ["a5"], {"a5": {"null": 2, "bootstrap": 100, "paper_cells": 4}})["a5"].numbers
    assert set(res["paper"]["L"]["median_ln_sqrt_V"]) == {"segments", "rgb_kmeans", "gabor_kmeans", "cells"}
    o = res["linear"]["L"]["ordering"]
    assert len(o["order"]) == 4 and 0 <= o["confidence"] <= 1
    assert res["paper"]["group_counts"]["cells"] == [16] and res["linear"]["group_counts"]["cells"] == [16]
    figs = draw("a5", load_result(tmp_path, "a5"), tmp_path / "redrawn")  # figures from the saved run alone
    assert len(figs) == 3 and all(f.path.is_file() for f in figs)
    assert (tmp_path / "tables" / "a5_ordering.csv").is_file()
    groups = build_groupings(img[0], ids, "linear", seed=0, null=2)
    assert {"segments/null0", "cells/null1"} <= set(groups)


def _clip(img, ids):
    from xinc.data.categories import Category
    from xinc.data.panoptic import PanopticClip, Segment

    segs = [Segment(3, 1, "sky", False, 0, (0, 0, 0, 0)), Segment(9, 2, "car", True, 0, (0, 0, 0, 0))]
    return PanopticClip(frames=img, annotated=[0], ids={0: ids}, segments={0: segs},
                        categories={1: Category(1, "sky", False), 2: Category(2, "car", True)}, vanished=[],
                        dataset="test", video="v")
