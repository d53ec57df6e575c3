"""Kind add: a + b and a - b (residual additions, shifts such as FiLM's beta, biases added by hand).

Linear: the sum of the contribution-carrying operands' tangents; constant operands are the offset (split over
the neurons). Paper: the sum of the operands' per-neuron states; constants dropped."""

import operator

import torch

from xinc.canvas.kinds.base import Kind, Op, collapse_to, register_kind


def align(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """A state (n, *s) with singleton dims inserted after n so that it broadcasts against (n, ndim dims)."""
    return t.reshape(t.shape[0], *([1] * (ndim - (t.dim() - 1))), *t.shape[1:])


def _signs(op: Op) -> list[tuple[object, float]]:
    """(argument, sign) of both operands."""
    minus = op.node.target in (operator.sub, torch.sub, "sub", operator.isub)
    return [(op.node.args[0], 1.0), (op.node.args[1], -1.0 if minus else 1.0)]


@register_kind
class Add(Kind):
    name = "add"
    functions = (operator.add, operator.sub, operator.iadd, operator.isub, torch.add, torch.sub)
    methods = ("add", "sub", "add_")
    paper_note = "addition -> sum of the operands' contributions, constants dropped"

    def check(self, op: Op) -> str | None:
        if len(op.node.args) != 2 or op.node.kwargs:
            return "add/sub with alpha= or other extra arguments"
        return None

    def _combine(self, op: Op, states: dict) -> torch.Tensor:
        nd = op.out.dim()
        parts = [(align(states[a], nd), s) for a, s in _signs(op) if a in states]
        out = parts[0][0] * parts[0][1]
        for t, s in parts[1:]:
            if t.shape != out.shape:  # paper mode: one side collapsed, the other resolved
                t, out = collapse_to(t, out.shape[1:]), collapse_to(out, t.shape[1:])
            out = out + t * s
        return out

    def linear(self, op: Op, ts: list[torch.Tensor]) -> torch.Tensor:
        return self._combine(op, dict(zip(op.inputs, ts)))

    def offset(self, op: Op) -> torch.Tensor | None:
        consts = [(op.value(a), s) for a, s in _signs(op) if a not in op.inputs]
        if not consts:
            return None
        c, s = consts[0]
        return torch.as_tensor(c, dtype=op.out.dtype, device=op.out.device) * s

    def paper(self, op: Op, ss: list[torch.Tensor]) -> torch.Tensor:
        return self._combine(op, dict(zip(op.inputs, ss)))
