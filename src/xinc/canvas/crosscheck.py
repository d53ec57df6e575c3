"""Gradient x activation cross-check of the linearised ('linear' mode) canvases on a small crop, by autograd.

For output pixel p the linear-mode map of neuron k is  J_p . R_k + beta(p) / K : the gradient of the logit
at p with respect to the layer's pre-activation v (at the true forward pass) times the neuron's additive
part R_k of v, plus its share of the downstream biases propagated by the same tangent network
(beta(p) = sum_q dz(p)/db_q . b_q). Everything here comes from autograd, not from the rules' propagation
code, so it is an independent check. Cost grows with the crop size: keep crops small.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from xinc.canvas.engine import _trace, check_frame, check_model, make_rule, model_device
from xinc.canvas.rules import kernel_conv
from xinc.errors import XincError


def _crop_index(H: int, W: int, crop: tuple[int, int, int, int] | None) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    y0, y1, x0, x1 = crop if crop is not None else (0, H, 0, W)
    if not (0 <= y0 < y1 <= H and 0 <= x0 < x1 <= W):
        raise XincError(f"crop {crop}: must satisfy 0 <= y0 < y1 <= {H} and 0 <= x0 < x1 <= {W}")
    ys, xs = torch.meshgrid(torch.arange(y0, y1), torch.arange(x0, x1), indexing="ij")
    return ys.reshape(-1), xs.reshape(-1), y1 - y0, x1 - x0


def _batched_grads(out: torch.Tensor, leaves: list[torch.Tensor]) -> list[torch.Tensor]:
    """Gradients of every entry of the 1-D `out` w.r.t. the leaves, batched (one row per entry)."""
    eye = torch.eye(out.numel(), dtype=out.dtype, device=out.device)
    grads = torch.autograd.grad(out, leaves, grad_outputs=eye, is_grads_batched=True, allow_unused=True)
    return [torch.zeros(out.numel(), *leaf.shape, device=out.device) if g is None else g
            for g, leaf in zip(grads, leaves)]


def _nerv_downstream(model, index: int, v: torch.Tensor, biases: list[torch.Tensor]) -> torch.Tensor:
    """Head logits from block `index`'s post-shuffle pre-activation v (1, C, H, W), with explicit bias leaves."""
    x = model.act(v)
    q = 0
    for blk in model.blocks[index + 1:]:
        conv = blk.conv
        x = model.act(F.pixel_shuffle(F.conv2d(x, conv.weight, biases[q], padding=conv.kernel_size[0] // 2),
                                      blk.stride))
        q += 1
    head = model.head
    return F.conv2d(x, head.weight, biases[q], padding=head.kernel_size[0] // 2)


def _mlp_downstream(model, index: int, v: torch.Tensor, biases: list[torch.Tensor]) -> torch.Tensor:
    """Output logits (P, out) from linear layer `index`'s pre-activation v (P, m)."""
    x = v
    for q, lin in enumerate(model.layers[index + 1:]):
        x = F.linear(model.activation(index + q, x), lin.weight, biases[q])
    return x


def grad_x_activation(model, layer: str, frame: int = 0, *, crop: tuple[int, int, int, int] | None = None,
                      per_channel: bool = False, embedding: torch.Tensor | None = None) -> torch.Tensor:
    """Linear-mode maps of every neuron on the crop rows y0:y1, cols x0:x1, by autograd.

    Returns (K, h, w) (summed over RGB) or (K, 3, h, w) with per_channel; equal to the rows/cols of
    compute_canvas(..., mode='linear') up to float32 round-off.
    """
    check_model(model)
    if embedding is None:
        frame = check_frame(model, frame)
    rule = make_rule(model, layer, "linear", per_channel)
    info = rule.info
    if per_channel and info.kind == "conv-head":
        raise XincError("grad_x_activation: the head's per-channel form is exact already; use per_channel=False")
    dev = model_device(model)
    tr = _trace(model, frame, embedding, dev)
    ys, xs, hc, wc = _crop_index(info.height, info.width, crop)
    K = info.num_neurons
    with torch.enable_grad():
        if info.kind == "mlp":
            idx = rule.index
            v = tr.pre[layer].detach().clone().requires_grad_(True)
            biases = [lin.bias.detach().clone().requires_grad_(True) for lin in model.layers[idx + 1:]]
            out = _mlp_downstream(model, idx, v, biases)  # (P, out)
            pix = (ys * info.width + xs).to(dev)
            sel = out[pix]  # (N, out)
        else:
            if info.kind == "conv-head":
                idx, v0, biases = None, tr.pre["head"], []
                out = (v := v0.detach().clone().requires_grad_(True))
            else:
                idx = rule.index
                v = tr.post[layer].detach().clone().requires_grad_(True)
                convs = [blk.conv for blk in model.blocks[idx + 1:]] + [model.head]
                biases = [c.bias.detach().clone().requires_grad_(True) for c in convs]
                out = _nerv_downstream(model, idx, v, biases)
            sel = out[0][:, ys.to(dev), xs.to(dev)].t()  # (N, 3)
        target = sel.reshape(-1) if per_channel else sel.sum(1)
        grads = _batched_grads(target, [v, *biases])
    gv = grads[0]  # (T, *v.shape)
    beta = torch.zeros(target.numel(), device=dev)
    for g, b in zip(grads[1:], biases):
        beta = beta + (g * b.detach()).flatten(1).sum(1)
    T = target.numel()
    rule.prepare(tr)
    if info.kind == "mlp":
        # additive parts c_ij(p) = a_i(p) W[j,i] + b_j/n at the crop pixels: (n, N, m)
        a = tr.inputs[layer][pix]  # (N, n)
        c = a.t()[:, :, None] * rule.W.t()[:, None, :] + (rule.b / rule.n)[None, None, :]
        gpix = gv.reshape(T, -1, gv.shape[-1])  # (T, P, m)
        owner = torch.arange(T, device=dev) // (out.shape[1] if per_channel else 1)
        g_at = gpix[torch.arange(T, device=dev), pix[owner]]  # (T, m): gradient at the target's own pixel
        vals = torch.einsum("tm,ntm->nt", g_at, c[:, owner]) + beta[None] / K
    else:
        vals = torch.empty(K, T, device=dev)
        gflat = gv.reshape(T, v.shape[1], -1)  # (T, C, HW)
        for start in range(0, K, 256):  # chunks of neurons keep memory bounded
            stop = min(K, start + 256)
            if info.kind == "conv-head":
                maps = kernel_conv(rule.x, rule.W, rule.b, start, stop)
                ch = torch.arange(start, stop, device=dev) % rule.cout
            else:
                maps, ch = rule.routed(start, stop)
            g = gflat[:, ch]  # (T, n, HW)
            vals[start:stop] = torch.einsum("tnp,np->nt", g, maps.reshape(maps.shape[0], -1))
        vals = vals + beta[None] / K
    if per_channel:
        nout = vals.shape[1] // (hc * wc)
        return vals.reshape(K, hc * wc, nout).transpose(1, 2).reshape(K, nout, hc, wc)
    return vals.reshape(K, hc, wc)

