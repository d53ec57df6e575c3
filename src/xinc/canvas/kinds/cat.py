"""Kind cat: torch.cat of contribution-carrying tensors with others (skip features, concatenated encodings).

Linear: the tangents concatenated with zeros where an operand is constant; the constant operands form the
offset (split over the neurons). Paper: the same with constants dropped (zeros); once a neuron's channels are
collapsed along the concatenated dimension, the operands' states are summed."""

import torch

from xinc.canvas.kinds.add import align
from xinc.canvas.kinds.base import Kind, Op, collapse_to, register_kind


def _dim(op: Op) -> int:
    d = op.arg(1, "dim", 0)
    return d if d < 0 else d - op.out.dim()  # negative: the same dim of a state with a leading neuron dim


@register_kind
class Cat(Kind):
    name = "cat"
    functions = (torch.cat, torch.concat, torch.concatenate)
    paper_note = "concatenation -> contributions concatenated with zeros for constant operands"

    def _pieces(self, op: Op, states: dict, like: torch.Tensor) -> list[torch.Tensor]:
        nd = op.out.dim()
        out = []
        for a in op.node.args[0]:
            if a in states:
                out.append(align(states[a], nd))
            else:
                v = op.value(a)
                out.append(like.new_zeros(like.shape[0], *([1] * (nd - v.dim())), *v.shape))
        return out

    def _cat(self, op: Op, states: dict) -> torch.Tensor:
        like = next(iter(states.values()))
        pieces = self._pieces(op, states, like)
        d = _dim(op)
        shape = torch.broadcast_shapes(*[p.shape[:d] + (1,) + (p.shape[d + 1:] if d != -1 else ()) for p in pieces])
        return torch.cat([p.expand(*shape[:d], p.shape[d], *(shape[d + 1:] if d != -1 else ())) for p in pieces], d)

    def linear(self, op: Op, ts: list[torch.Tensor]) -> torch.Tensor:
        return self._cat(op, dict(zip(op.inputs, ts)))

    def offset(self, op: Op) -> torch.Tensor | None:
        vals = [op.value(a) for a in op.node.args[0]]
        zeros = [torch.zeros_like(v) if a in op.inputs else v for a, v in zip(op.node.args[0], vals)]
        return torch.cat(zeros, op.arg(1, "dim", 0))

    def paper(self, op: Op, ss: list[torch.Tensor]) -> torch.Tensor:
        states = dict(zip(op.inputs, ss))
        d = _dim(op)
        if any(states[a].shape[d] == 1 and op.values[a].shape[d] > 1 for a in states):
            out = None
            for s in states.values():  # collapsed along the concatenated dim: sum the operands' states
                out = s if out is None else collapse_to(out, s.shape[1:]) + collapse_to(s, out.shape[1:])
            return out
        return self._cat(op, states)
