"""Kind layer_norm: nn.LayerNorm / F.layer_norm over the last dims (channels last, e.g. ConvNeXt blocks).

Linear: the statistics frozen at the traced input, the mean subtraction kept (it is linear):
(t - mean(t)) / sigma0 * gamma, beta as offset; exact at the traced point (conservative LayerNorm
propagation: sigma is treated as a constant). Paper: scaled by gamma / sigma0 (averaged over collapsed
channels), no centring or shift."""

import torch
import torch.nn.functional as F
from torch import nn

from xinc.canvas.kinds.base import Kind, Op, fit, register_kind


def _params(op: Op) -> tuple[tuple[int, ...], torch.Tensor | None, torch.Tensor | None, float]:
    if op.module is not None:
        m = op.module
        return tuple(m.normalized_shape), m.weight, m.bias, m.eps
    shape = op.arg(1, "normalized_shape")
    return tuple(shape), op.arg(2, "weight"), op.arg(3, "bias"), float(op.arg(4, "eps", 1e-5))


def _sigma(op: Op) -> torch.Tensor:
    if "sigma" not in op.cache:
        shape, _, _, eps = _params(op)
        dims = tuple(range(-len(shape), 0))
        x = op.input_value()
        op.cache["sigma"] = torch.sqrt(x.var(dims, unbiased=False, keepdim=True) + eps)
    return op.cache["sigma"]


@register_kind
class LayerNorm(Kind):
    name = "layer_norm"
    modules = (nn.LayerNorm,)
    functions = (F.layer_norm,)
    paper_note = "LayerNorm -> scaled by gamma / sigma (statistics of the traced input), no centring or shift"

    def reference(self, op: Op):
        shape, w, _, _ = _params(op)
        dims, sigma = tuple(range(-len(shape), 0)), _sigma(op)

        def frozen(x):
            y = (x - x.mean(dims, keepdim=True)) / sigma
            return y if w is None else y * w.detach()

        return frozen

    def linear(self, op: Op, ts: list[torch.Tensor]) -> torch.Tensor:
        return self.reference(op)(ts[0])

    def offset(self, op: Op) -> torch.Tensor | None:
        b = _params(op)[2]
        return None if b is None else b.detach()

    def paper(self, op: Op, ss: list[torch.Tensor]) -> torch.Tensor:
        _, w, _, _ = _params(op)
        scale = 1.0 / _sigma(op) if w is None else w.detach() / _sigma(op)
        return ss[0] * fit(scale, ss[0])
