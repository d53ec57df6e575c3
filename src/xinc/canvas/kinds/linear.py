"""Kind linear: nn.Linear / F.linear downstream of the layer (channels last). Linear: the weights, bias as
offset; paper: a 1x1 mean filter, i.e. the neuron's single map (channels summed) passes unchanged."""

import torch
import torch.nn.functional as F
from torch import nn

from xinc.canvas.kinds.base import Kind, OneHot, Op, register_kind


def _weights(op: Op) -> tuple[torch.Tensor, torch.Tensor | None]:
    if op.module is not None:
        return op.module.weight.detach(), None if op.module.bias is None else op.module.bias.detach()
    b = op.arg(2, "bias")
    return op.arg(1, "weight").detach(), None if b is None else b.detach()


@register_kind
class Linear(Kind):
    name = "linear"
    modules = (nn.Linear,)
    functions = (F.linear,)
    paper_note = "Linear -> 1x1 mean filter (channels summed, map unchanged)"
    onehot = True

    def check(self, op: Op) -> str | None:
        if op.node.op == "call_function" and (len(op.inputs) != 1 or op.inputs[0] is not op.node.args[0]):
            return "weights that depend on the explained layer"
        return None

    def linear(self, op: Op, ts: list) -> torch.Tensor:
        t, w = ts[0], _weights(op)[0]
        if isinstance(t, OneHot) and t.cdim != -1:
            t = t.dense()
        if isinstance(t, OneHot):  # one input channel per neuron: an outer product with its weight column
            cols = w.t().index_select(0, t.chan)  # (n, C_out)
            return t.vals.unsqueeze(-1) * cols.reshape(cols.shape[0], *([1] * (t.vals.dim() - 1)), cols.shape[1])
        return F.linear(t, w)

    def offset(self, op: Op) -> torch.Tensor | None:
        return _weights(op)[1]

    def paper(self, op: Op, ss: list) -> torch.Tensor:
        s = ss[0]
        if isinstance(s, OneHot) and s.cdim == -1:
            return s.vals.unsqueeze(-1)
        s = s.dense() if isinstance(s, OneHot) else s
        return s.sum(-1, keepdim=True)
