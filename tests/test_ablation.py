"""Ablation ground truth: removing a neuron changes the logits by exactly its map where the rule is exact, and
the batched downstream passes equal explicit per-neuron forwards of a modified model."""

from __future__ import annotations

import copy

import pytest
import torch

from test_canvas import tiny_ffn, tiny_nerv
from xinc.canvas import compute_canvas
from xinc.canvas.ablation import ablation_effects, logits_without, weight_l1


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=2e-6 * max(1.0, b.abs().max().item()))


def _removed_forward(model, layer: str, k: int, frame: int = 0) -> torch.Tensor:
    """Slow reference: a deep copy with neuron k's slice and bias share zeroed, full forward, logits summed."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        if hasattr(m, "blocks"):
            conv = m.head if layer == "head" else m.blocks[int(layer[5:]) - 1].conv
            i, o = divmod(k, conv.out_channels)
            conv.weight[o, i] = 0
            conv.bias[o] -= model_bias(model, layer)[o] / conv.in_channels
            return m.trace([frame]).pre["head"][0].sum(0)
        lin = m.layers[int(layer[5:]) - 1]
        lin.bias -= lin.bias / lin.in_features
        lin.weight[:, k] = 0
        return m.trace().pre[m.layer_names[-1]].sum(1).reshape(m.config.height, m.config.width)


def model_bias(model, layer: str) -> torch.Tensor:
    return (model.head if layer == "head" else model.blocks[int(layer[5:]) - 1].conv).bias.detach()


def _full(model, frame: int = 0) -> torch.Tensor:
    if hasattr(model, "blocks"):
        return model.trace([frame]).pre["head"][0].sum(0)
    return model.trace().pre[model.layer_names[-1]].sum(1).reshape(model.config.height, model.config.width)


@pytest.mark.parametrize("which", ["ffn:layer1", "ffn:layer3", "nerv:block1", "nerv:block3", "nerv:head"])
def test_batched_ablation_equals_explicit_forwards(which):
    kind, layer = which.split(":")
    m = tiny_ffn("gelu", 3) if kind == "ffn" else tiny_nerv("three_blocks_s1s2s3")
    frame = 0 if kind == "ffn" else 2
    tr = m.trace() if kind == "ffn" else m.trace([frame])
    ks = [0, 3, 5]
    d = ablation_effects(m, layer, tr, torch.tensor(ks), batch=2)
    for j, k in enumerate(ks):
        _close(d[j], (_full(m, frame) - _removed_forward(m, layer, k, frame)).detach())


@pytest.mark.parametrize("which,mode", [("ffn:layer3", "paper"), ("ffn:layer3", "linear"), ("nerv:head", "paper"),
                                        ("nerv:head", "linear")])
def test_exact_layers_ablation_equals_map(which, mode):
    kind, layer = which.split(":")
    m = tiny_ffn("relu", 3) if kind == "ffn" else tiny_nerv("two_blocks_s2s1_table")
    tr = m.trace() if kind == "ffn" else m.trace([1])
    cv = compute_canvas(m, layer, 0 if kind == "ffn" else 1, mode=mode)
    d = ablation_effects(m, layer, tr, torch.arange(cv.maps.shape[0]), batch=7, downstream_bias=mode == "linear")
    _close(d, cv.maps)
    bad = cv.maps.clone()
    bad[2] *= 1.01  # a map 1 % too large must not pass
    assert (d - bad).abs().max() > 2e-6 * max(1.0, d.abs().max().item())


@pytest.mark.parametrize("layer", ["layer1", "layer2"])
def test_linear_maps_equal_ablation_where_relu_pattern_holds(layer):
    """ReLU downstream is piecewise linear: the linear map is the ablation change at every pixel where removing
    the neuron flips no downstream ReLU (the biases split as the rule splits them)."""
    m = tiny_ffn("relu", 3, seed=2)
    tr = m.trace()
    cv = compute_canvas(m, layer, 0, mode="linear")
    K = cv.maps.shape[0]
    d = ablation_effects(m, layer, tr, torch.arange(K), batch=4, downstream_bias=True)
    idx = int(layer[5:]) - 1
    checked = 0
    for k in range(K):
        lin = m.layers[idx]
        h = m.activation(idx, tr.pre[layer] - (tr.inputs[layer][:, k:k + 1] * lin.weight[:, k] + lin.bias / K))
        same = (h > 0) == (tr.pre[layer] > 0)
        for q in range(idx + 1, len(m.layers) - 1):  # later hidden layers with their biases scaled as removed
            nxt = m.layers[q]
            z_abl = torch.nn.functional.linear(h, nxt.weight, nxt.bias * (1 - 1 / K))
            same &= ((z_abl > 0) == (tr.pre[f"layer{q + 1}"] > 0)).all(1, keepdim=True)
            h = m.activation(q, z_abl)
        stable = same.all(1).reshape(cv.maps.shape[1:])
        checked += int(stable.sum())
        _close(d[k][stable], cv.maps[k][stable])
    assert checked > K * cv.maps[0].numel() // 4  # most pixels keep their pattern: the check has teeth


def test_removal_and_weight_l1():
    m = tiny_nerv("one_block_s3_k5")
    tr = m.trace([0])
    K = 6 * m.blocks[0].conv.out_channels
    none, every = torch.zeros(1, K, dtype=torch.bool), torch.ones(1, K, dtype=torch.bool)
    z = logits_without(m, "block1", tr, torch.cat([none, every]))
    _close(z[0], tr.pre["head"][0])
    _close(z[1], m.head(m.act(torch.zeros_like(tr.inputs["head"])))[0])  # block output act(0) = 0
    one = torch.zeros(1, K, dtype=torch.bool)
    one[0, 4] = True
    _close(logits_without(m, "block1", tr, one)[0].sum(0), _removed_forward(m, "block1", 4))
    w = m.blocks[0].conv.weight
    assert weight_l1(m, "block1")[4].item() == pytest.approx(w[4 % w.shape[0], 4 // w.shape[0]].abs().sum().item())
    f = tiny_ffn("relu", 3)
    assert weight_l1(f, "layer2").shape == (f.layers[1].in_features,)
