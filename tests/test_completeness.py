"""Honest completeness: every canvas reports the identity its rule guarantees and the output-side gap (sum of
the maps vs what they claim to decompose), each checked against an independent computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from test_canvas import tiny_ffn, tiny_nerv
from xinc.canvas import compute_canvas, layer_info
from xinc.canvas.reduce import ROUNDOFF_REL, completeness_line, residual_exact
from xinc.canvas.rules import ConvHeadRule

KEYS = {"identity_max_abs", "identity_rel", "gap_max_abs", "gap_rel"}


def _gap(maps: torch.Tensor, target: torch.Tensor) -> float:
    return (maps.double().sum(0) - target.double()).abs().max().item()


def test_last_paper_block_gap_is_box_filtered_block_output():
    m = tiny_nerv("three_blocks_s1s2s3")
    last = f"block{len(m.blocks)}"
    cv = compute_canvas(m, last, 1)
    assert cv.residual.keys() == KEYS and not cv.exact
    y = m.trace([1]).inputs["head"][0]  # the block output
    k = m.head.kernel_size[0]
    target = F.avg_pool2d(y.sum(0)[None, None], k, 1, k // 2, count_include_pad=True)[0, 0]
    assert cv.residual["gap_max_abs"] == pytest.approx(_gap(cv.maps, target), rel=1e-4, abs=1e-6)
    assert cv.residual["gap_rel"] > 1e-3 and cv.residual["identity_rel"] < ROUNDOFF_REL
    assert "box-filtered block output" in cv.info.gap_of and "PixelShuffle" in cv.info.identity


def test_earlier_paper_block_gap_uses_stand_ins_per_channel():
    """Block 1 of three: the gap target is sum_c S(y_c) with S = box, (nearest up, gelu, box)..., by loops."""
    m = tiny_nerv("three_blocks_s1s2s3")
    cv = compute_canvas(m, "block1", 0)
    tr = m.trace([0])
    total = 0
    for c in range(tr.inputs["block2"].shape[1]):
        x = tr.inputs["block2"][0, c][None, None]
        ks = [b.conv.kernel_size[0] for b in m.blocks[1:]] + [m.head.kernel_size[0]]
        x = F.avg_pool2d(x, ks[0], 1, ks[0] // 2)
        for blk, k in zip(m.blocks[1:], ks[1:]):
            x = F.gelu(x.repeat_interleave(blk.stride, -1).repeat_interleave(blk.stride, -2))
            x = F.avg_pool2d(x, k, 1, k // 2)
        total = total + x[0, 0].double()
    assert cv.residual["gap_max_abs"] == pytest.approx(_gap(cv.maps, total), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("act", ["relu", "sine"])
def test_mlp_paper_hidden_gap_is_activated_layer_output(act):
    m = tiny_ffn(act, 3)
    tr = m.trace()
    cv = compute_canvas(m, "layer2", 0)
    z = tr.pre["layer2"]
    target = m.activation(1, z).sum(1).reshape(cv.maps.shape[1:])
    assert cv.residual["gap_max_abs"] == pytest.approx(_gap(cv.maps, target), rel=1e-4, abs=1e-6)
    assert cv.residual["identity_rel"] < ROUNDOFF_REL and not cv.exact


@pytest.mark.parametrize("layer,mode", [("head", "paper"), ("block2", "linear")])
def test_exact_layers_report_exact_and_a_mutated_map_is_caught(layer, mode, monkeypatch):
    m = tiny_nerv("three_blocks_s1s2s3")
    if mode == "linear":  # ReLU downstream: the tangent network is the network
        m.config.act, m.act = "relu", torch.nn.functional.relu
    cv = compute_canvas(m, layer, 0, mode=mode)
    assert cv.exact and cv.residual["gap_rel"] < ROUNDOFF_REL and cv.residual["identity_rel"] < ROUNDOFF_REL
    if layer != "head":
        return
    real = ConvHeadRule.compute

    def bent(self, a, b):  # one wrong map; the rule's identity part is unaffected
        maps, part = real(self, a, b)
        maps = maps.clone()
        maps[0] += 1e-2 * maps.abs().max()
        return maps, part

    monkeypatch.setattr(ConvHeadRule, "compute", bent)
    bad = compute_canvas(m, "head", 0)
    assert bad.residual["identity_rel"] < ROUNDOFF_REL and bad.residual["gap_rel"] > 1e-3 and not bad.exact


def test_non_finite_is_never_exact():
    m = tiny_nerv("one_block_s3_k5")
    with torch.no_grad():
        m.head.bias[0] = float("inf")
    cv = compute_canvas(m, "head", 0)
    assert not cv.exact
    assert not residual_exact({"identity_rel": 0.0, "identity_max_abs": float("nan"), "gap_rel": 0.0,
                               "gap_max_abs": 0.0})
    assert not residual_exact({"identity_rel": 0.0, "identity_max_abs": 0.0})  # no gap measured: not exact


def test_completeness_line_names_both():
    m = tiny_nerv("one_block_s3_k5")
    info = layer_info(m, "block1")
    cv = compute_canvas(m, "block1", 0)
    line = completeness_line(info, {0: cv.residual})
    assert line.startswith("exact=False") and "identity [PixelShuffle" in line and "gap [sum of maps vs box" in line
    head = compute_canvas(m, "head", 0)
    assert completeness_line(layer_info(m, "head"), {0: head.residual}).startswith("exact=True;")
