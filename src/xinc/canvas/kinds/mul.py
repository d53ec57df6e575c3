"""Kind mul: x * c and x / c with c constant w.r.t. the layer (per-channel FiLM scales, SIREN's frequency w0,
scalar gains). Linear: multiply by c (no offset); paper: multiply by c averaged over collapsed channels.
A product of two contribution-carrying operands is linearised by the product rule (not piecewise linear)."""

import operator

import torch

from xinc.canvas.kinds.add import align
from xinc.canvas.kinds.base import Kind, OneHot, Op, fit, register_kind


def _divides(op: Op) -> bool:
    return op.node.target in (operator.truediv, torch.div, torch.true_divide, "div", "truediv")


@register_kind
class Mul(Kind):
    name = "mul"
    functions = (operator.mul, operator.imul, torch.mul, operator.truediv, torch.div, torch.true_divide)
    methods = ("mul", "div", "mul_")
    paper_note = "scaling by a constant -> the same scaling (per-channel factors averaged over collapsed channels)"
    onehot = True

    def check(self, op: Op) -> str | None:
        if len(op.node.args) != 2 or op.node.kwargs:
            return "mul/div with extra arguments (rounding_mode=, out=)"
        if _divides(op) and op.node.args[1] in op.inputs:
            return "division by a quantity that depends on the explained layer"
        return None

    def exact(self, op: Op) -> bool:
        return not self._both(op)

    def _both(self, op: Op) -> bool:
        return all(a in op.inputs for a in op.node.args)

    def _const(self, op: Op) -> torch.Tensor | float:
        c = op.value(op.node.args[1] if op.node.args[0] in op.inputs else op.node.args[0])
        return 1.0 / c if _divides(op) else c

    def _scale(self, op: Op, t: OneHot) -> OneHot:
        c = self._const(op)
        if isinstance(c, torch.Tensor) and c.dim() > 0:
            c = t.pick(c.to(t.vals.dtype))
        return t.like(t.vals * c)

    def linear(self, op: Op, ts: list) -> torch.Tensor | OneHot:
        if isinstance(ts[0], OneHot) and not self._both(op):
            return self._scale(op, ts[0])
        ts = [t.dense() if isinstance(t, OneHot) else t for t in ts]
        if self._both(op):  # product rule at the traced point
            (a, b), st, nd = op.node.args, dict(zip(op.inputs, ts)), op.out.dim()
            return align(st[a], nd) * op.values[b] + align(st[b], nd) * op.values[a]
        return ts[0] * self._const(op)

    def paper(self, op: Op, ss: list) -> torch.Tensor | OneHot:
        if isinstance(ss[0], OneHot) and not self._both(op):
            return self._scale(op, ss[0])
        ss = [s.dense() if isinstance(s, OneHot) else s for s in ss]
        if self._both(op):
            return super().paper(op, ss)
        return ss[0] * fit(self._const(op), ss[0])
