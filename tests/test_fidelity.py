"""Small fidelity fixes against the original code's outputs: float64 MLP column sums, save_image rounding."""

from __future__ import annotations

import torch

from xinc.canvas.engine import make_rule, trace_frame
from xinc.models import FFN, FFNConfig
from xinc.train.metrics import to_uint8


def test_to_uint8_rounds_half_up_like_save_image():
    x = torch.tensor([0.5, 2.5, 254.5, 3.49, -1.0, 300.0]) / 255.0
    # torch.round would give 0, 2, 254 (half to even); torchvision's save_image gives 1, 3, 255
    assert to_uint8(x).tolist() == [1, 3, 255, 3, 0, 255]
    ref = torch.clamp(x * 255 + 0.5, 0, 255).to(torch.uint8)  # save_image: mul(255).add_(0.5).clamp_(0, 255)
    assert torch.equal(to_uint8(x), ref)


def test_mlp_column_sums_are_float64_rounded_once():
    model = FFN(FFNConfig(height=4, width=6, hidden=256, layers=3), torch.Generator().manual_seed(0))
    W = model.layers[1].weight.data  # (256, 256)
    v = torch.randn(W.shape[0], generator=torch.Generator().manual_seed(1)) * 1e3
    W[:, 3] = v - v.mean()  # a column that nearly cancels: float32 accumulation is off by ~200% here
    assert not torch.equal(W.sum(0), W.double().sum(0).float())  # the old computation differs
    rule = make_rule(model, "layer2", "paper")
    rule.prepare(trace_frame(model, 0))
    exact = W.double().sum(0)
    assert torch.equal(rule.wsum, exact.float())
    assert float((rule.wsum.double() - exact).abs().max()) <= float(exact.abs().max()) * 2**-24
