"""The linear NeRV block rule's adjoint form (per-pixel Jacobians) against the per-neuron forward form."""

from __future__ import annotations

import math

import pytest
import torch

from xinc.canvas import adjoint, kernels
from xinc.canvas.engine import compute_canvas, make_rule, trace_frame
from xinc.canvas.rules import ConvBlockLinearRule, linear_block_forward
from xinc.models.nerv import NeRV, NeRVConfig

SHAPES = [  # (strides, kernel sizes, head kernel, act): NeRV-like, HNeRV-like (k 1 then 5), stride 1, odd strides
    ([2, 2], [3, 3], 3, "gelu"),
    ([3, 2], [1, 5], 1, "silu"),
    ([2, 3, 2], [5, 1, 3], 5, "relu"),
    ([1, 2], [3, 3], 3, "gelu"),
]


def tiny(strides, kernels, head, act, table=False, seed=0) -> NeRV:
    R = math.prod(strides)
    cfg = NeRVConfig(height=2 * R, width=3 * R, num_frames=3, fc_hw=[2, 3], fc_dim=6, strides=strides,
                     kernel_sizes=kernels, widths=[5, 4, 3][:len(strides)], head_ks=head, act=act,
                     embed="table" if table else "pe_1.25_4", embed_shape=[4, 2, 3] if table else None)
    torch.manual_seed(seed)
    m = NeRV(cfg).eval()
    if table:
        with torch.no_grad():
            m.embeddings.normal_()
    return m


def check_rule(model, layer, per_channel, ranges, frame=1, tol=2e-6):
    rule = make_rule(model, layer, "linear", per_channel)
    with torch.no_grad():
        rule.prepare(trace_frame(model, frame))
        assert (rule.pj is not None) != (rule.cj is not None)
        assert (rule.cj is not None) == kernels.available()
        for a, b in ranges:
            got, part = rule.compute(a, b)
            ref = linear_block_forward(rule, a, b)
            assert got.shape == ref.shape
            err = (got - ref).abs().max() / ref.abs().max()
            assert err < tol, (layer, per_channel, a, b, float(err))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"s{s[0]}k{s[1]}h{s[2]}{s[3]}")
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("compiled", [True, False], ids=["compact", "torch"])
def test_adjoint_equals_forward(shape, per_channel, compiled, monkeypatch):
    """Every block, chunks inside one row of kernels, across rows, and whole rows (the GEMM path); the compiled
    kernel on the compact Jacobian (CPU, numba) and the batched product on the full J."""
    if compiled and not kernels.available():
        pytest.skip("numba is not installed (the compact Jacobian kernel is CPU/numba only)")
    monkeypatch.setattr(kernels, "ENABLED", compiled)
    m = tiny(*shape, table=shape[1][0] == 1)
    for bi, blk in enumerate(m.blocks):
        C = blk.conv.out_channels
        K = blk.conv.in_channels * C
        check_rule(m, f"block{bi + 1}", per_channel, [(0, K), (1, K - 3), (C - 2, C + 3), (0, 5), (C, 3 * C + 1)])


def test_adjoint_in_bands_equals_one_band(monkeypatch):
    """Building J in bands of coarse rows gives the same J as in one band (boundary rows included)."""
    m = tiny([2, 2], [3, 3], 3, "gelu")
    rule = make_rule(m, "block1", "linear")
    with torch.no_grad():
        rule.prepare(trace_frame(m, 0))
        whole = adjoint.pixel_jacobian(m, 0, rule.slopes, False).J
        pj = adjoint.pixel_jacobian(m, 0, rule.slopes, False, band_elems=1)
    assert torch.equal(pj.J, whole)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"s{s[0]}k{s[1]}h{s[2]}{s[3]}")
def test_compact_jacobian_holds_every_nonzero(shape):
    """The compact J times the block's own slope at each cell keeps every nonzero entry of the full J (the
    reachable-cell geometry misses none), in bands of one coarse row as in one band, and the same bias term."""
    if not kernels.available():
        pytest.skip("numba is not installed (the compact Jacobian is built by a compiled kernel)")
    m = tiny(*shape, table=shape[1][0] == 1)
    with torch.no_grad():
        first = make_rule(m, "block1", "linear")
        first.prepare(trace_frame(m, 0))
        for bi in range(len(m.blocks)):
            slopes = first.slopes[bi:]
            full = adjoint.pixel_jacobian(m, bi, slopes, True)
            cj = adjoint.compact_jacobian(m, bi, slopes, True)
            assert torch.equal(adjoint.compact_jacobian(m, bi, slopes, True, band_elems=1).Jc, cj.Jc)
            torch.testing.assert_close(cj.gamma, full.gamma)
            C, r, p, W = cj.Jc.shape[0], cj.r, cj.pad, m.config.width
            sp = torch.nn.functional.pad(cj.slope, (p, p, p, p))  # the slope at every entry's cell
            o = torch.arange(C)
            sy, sx = (o % (r * r)) // r, o % r
            extra = cj.LX.gather(1, cj.XL) + cj.XJ  # (r, Emax): cell columns of the listed entries
            cols = torch.cat([cj.LX + j for j in range(cj.nd)] + [extra], 1)[sx] + p  # (C, nd W + Emax)
            s = sp[o[:, None, None], (cj.CY[sy] + p)[:, :, None], cols[:, None, :]]  # (C, Ymax, entries)
            assert cj.Jc.shape[-1] == cj.nd * W + cj.XL.shape[1]
            got = (cj.Jc.abs() * s.abs()[:, None]).sum((1, 2, 3)).double()
            torch.testing.assert_close(got, full.J.view(C, -1).abs().sum(1).double(), rtol=1e-6, atol=0)


def test_window_halfwidth_formula():
    """h -> ceil(h / r) through a shuffle, h + k // 2 through a conv (the block's own conv excluded)."""
    assert adjoint.window_halfwidth([4, 2, 2], [3, 3, 3], 3) == 1  # paper NeRV block1: 3x3 window
    assert adjoint.window_halfwidth([2], [3], 3) == 1
    assert adjoint.window_halfwidth([1], [3], 5) == 2
    assert adjoint.window_halfwidth([1, 1], [9, 5], 3) == 3


def test_fallback_forward_form_when_jacobian_too_big(monkeypatch):
    """Above the Jacobian budget the rule falls back to the forward form: same canvas, same residual."""
    m = tiny([2, 2], [3, 3], 3, "gelu")
    fast = compute_canvas(m, "block1", 2, mode="linear")
    monkeypatch.setitem(ConvBlockLinearRule.jacobian_budget, "cpu", 0)
    slow = compute_canvas(m, "block1", 2, mode="linear")
    torch.testing.assert_close(fast.maps, slow.maps, rtol=1e-5, atol=1e-6)
    assert fast.info.residual.keys() == slow.info.residual.keys()


def test_reference_nerv_block1_chunks(shared_dir):
    """The paper-config bunny NeRV (block1: 18,352 neurons, 3x3 window over 496 channels): a few chunks."""
    from xinc.models.importers.nerv_script import build_nerv_import

    ref = shared_dir / "reference"
    m, _, _ = build_nerv_import(ref / "nerv_bunny30_paper_config.pth", {"crop_list": "320_640"},
                                ref / "nerv_bunny30_paper_config.json", None)
    m.eval()
    check_rule(m, "block1", False, [(0, 12), (490, 502), (18352 - 9, 18352)], frame=7, tol=1e-5)
    check_rule(m, "block3", True, [(80, 92)], frame=7, tol=1e-5)
