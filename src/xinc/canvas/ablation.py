"""What a neuron really does: remove it from the network and measure the change of the output logits.

A neuron is what the canvas rules call one: the (c_in, c_out) kernel slice of a conv layer (k = c_in*C_out +
c_out) or one input unit of a linear layer (k = c_in), together with its share of the bias (b / n_in, the
rules' bias split). Removing it takes its own additive term z_k out of the layer's pre-activation; the rest of
the network then runs unchanged. Everything here runs from one traced forward pass per frame through the
*downstream* layers only, with many neurons (or many removal sets) in the batch dimension.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xinc.canvas.rules import layer_kind
from xinc.errors import XincError
from xinc.models.trace import Trace


def _is_video(model) -> bool:
    return hasattr(model, "blocks")


def layer_module(model, layer: str):
    """The nn.Conv2d / nn.Linear whose input slices are the layer's neurons."""
    kind = layer_kind(model, layer)
    if kind == "mlp":
        return model.layers[int(layer[len("layer"):]) - 1]
    return model.head if kind == "conv-head" else model.blocks[int(layer[len("block"):]) - 1].conv


def num_neurons(model, layer: str) -> int:
    mod = layer_module(model, layer)
    return mod.in_features if isinstance(mod, torch.nn.Linear) else mod.in_channels * mod.out_channels


def neuron_slices(model, layer: str, neurons: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(c_in, c_out) of flat neuron indices (c_out = -1 for MLP input units: every output)."""
    mod = layer_module(model, layer)
    neurons = torch.as_tensor(neurons, dtype=torch.long).reshape(-1)
    if isinstance(mod, torch.nn.Linear):
        return neurons, torch.full_like(neurons, -1)
    return neurons // mod.out_channels, neurons % mod.out_channels


def weight_l1(model, layer: str) -> torch.Tensor:
    """L1 norm of each neuron's weight slice (K,): the magnitude ranking of NeRV's pruning baseline."""
    w = layer_module(model, layer).weight.detach()
    if w.dim() == 2:
        return w.abs().sum(0).cpu()  # input unit i: column W[:, i]
    return w.abs().sum(dim=(2, 3)).t().reshape(-1).cpu()  # (c_in, c_out) c_in-major


def slice_terms(model, layer: str, trace: Trace, neurons: torch.Tensor) -> torch.Tensor:
    """Each neuron's own additive term of the layer's pre-activation: conv (n, h, w) in output channel c_out
    (x_i * W[o, i] + b_o / C_in), MLP (n, P, m) (a_i W[:, i] + b / n). One grouped conv / one broadcast."""
    mod = layer_module(model, layer)
    x = trace.inputs[layer]
    ci, co = neuron_slices(model, layer, neurons)
    ci, co = ci.to(x.device), co.to(x.device)
    if isinstance(mod, torch.nn.Linear):
        return x.t()[ci][:, :, None] * mod.weight.t()[ci][:, None, :] + (mod.bias / mod.in_features)[None, None]
    k = mod.kernel_size[0]
    w = mod.weight[co, ci][:, None]  # (n, 1, k, k)
    return F.conv2d(x[0, ci][None], w, mod.bias[co] / mod.in_channels, padding=k // 2, groups=len(ci))[0]


def _conv(conv, x: torch.Tensor, bias_scale: float) -> torch.Tensor:
    b = conv.bias if bias_scale == 1.0 else conv.bias * bias_scale
    return F.conv2d(x, conv.weight, b, padding=conv.kernel_size[0] // 2)


def logits_from(model, layer: str, pre: torch.Tensor, bias_scale: float = 1.0) -> torch.Tensor:
    """Output logits (B, C_out, H, W) from a batch of the layer's pre-activations (B, C, h, w) or (B, P, m);
    the downstream layers' biases times `bias_scale`."""
    H, W = model.config.height, model.config.width
    if not _is_video(model):
        idx = int(layer[len("layer"):]) - 1
        h = model.activation(idx, pre)
        for q in range(idx + 1, len(model.layers)):
            lin = model.layers[q]
            h = model.activation(q, F.linear(h, lin.weight, lin.bias * bias_scale))
        return h.transpose(1, 2).reshape(pre.shape[0], -1, H, W)
    if layer == "head":
        return pre
    idx = int(layer[len("block"):]) - 1
    x = model.act(F.pixel_shuffle(pre, model.blocks[idx].stride))
    for blk in model.blocks[idx + 1:]:
        x = model.act(F.pixel_shuffle(_conv(blk.conv, x, bias_scale), blk.stride))
    return _conv(model.head, x, bias_scale)


def _pre(trace: Trace, layer: str, video: bool) -> torch.Tensor:
    return trace.pre[layer] if video else trace.pre[layer][None]  # (1, C, h, w) | (1, P, m)


def ablation_effects(model, layer: str, trace: Trace, neurons, batch: int = 16,
                     downstream_bias: bool = False) -> torch.Tensor:
    """True contribution of each neuron: logits(full) - logits(neuron removed), summed over the output channels,
    (n, H, W) float32 on the CPU. `batch` neurons share one downstream pass. With `downstream_bias` the neuron
    also takes its 1/K share of every downstream bias along (the linear rule's bias split over K neurons)."""
    video = _is_video(model)
    neurons = torch.as_tensor(neurons, dtype=torch.long).reshape(-1)
    K = num_neurons(model, layer)
    if neurons.numel() and (int(neurons.min()) < 0 or int(neurons.max()) >= K):
        raise XincError(f"ablation of layer {layer}: neuron indices must lie in 0..{K - 1}")
    pre = _pre(trace, layer, video)
    with torch.no_grad():
        full = logits_from(model, layer, pre).sum(1)  # (1, H, W)
        out = []
        for a in range(0, neurons.numel(), max(1, int(batch))):
            idx = neurons[a:a + batch]
            terms = slice_terms(model, layer, trace, idx)
            x = pre.expand(len(idx), *pre.shape[1:]).clone()
            if video:
                _, co = neuron_slices(model, layer, idx)
                x[torch.arange(len(idx)), co.to(x.device)] -= terms
            else:
                x -= terms
            scale = 1.0 - 1.0 / K if downstream_bias else 1.0
            out.append((full - logits_from(model, layer, x, scale).sum(1)).float().cpu())
    H, W = model.config.height, model.config.width
    return torch.cat(out, 0) if out else torch.zeros(0, H, W)


def removal_keep(model, layer: str, removed: torch.Tensor) -> torch.Tensor:
    """Keep-mask of a layer's slices given a bool (K,) removal vector: (C_out, C_in) for convs, (n_in,) for MLPs."""
    mod = layer_module(model, layer)
    keep = ~torch.as_tensor(removed, dtype=torch.bool).reshape(-1)
    if isinstance(mod, torch.nn.Linear):
        return keep
    return keep.reshape(mod.in_channels, mod.out_channels).t()


def masked_params(model, layer: str, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of the layer with the removed slices zeroed and their bias shares taken out."""
    mod = layer_module(model, layer)
    w, b = mod.weight.detach(), mod.bias.detach()
    keep = keep.to(w.device, w.dtype)
    if isinstance(mod, torch.nn.Linear):
        return w * keep[None], b * keep.sum() / mod.in_features
    return w * keep[:, :, None, None], b * keep.sum(1) / mod.in_channels


def logits_without(model, layer: str, trace: Trace, removed_sets: torch.Tensor) -> torch.Tensor:
    """Output logits (S, C_out, H, W) of one frame with each row of the bool (S, K) matrix removed from the layer,
    from the layer's traced input (downstream passes only; one removal set per batch entry)."""
    mod = layer_module(model, layer)
    x = trace.inputs[layer]
    pres = []
    with torch.no_grad():
        for rem in removed_sets:
            w, b = masked_params(model, layer, removal_keep(model, layer, rem))
            if isinstance(mod, torch.nn.Linear):
                pres.append(F.linear(x, w, b)[None])
            else:
                pres.append(F.conv2d(x, w, b, padding=mod.kernel_size[0] // 2))
        return logits_from(model, layer, torch.cat(pres, 0))
