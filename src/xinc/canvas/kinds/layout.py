"""Kind layout: reshapes, copies and index views (permute, transpose, view, reshape, flatten, squeeze,
unsqueeze, contiguous, repeat, expand, slicing).

Both modes apply the same operation to every neuron's state (torch.func.vmap keeps the per-sample shapes
right); a paper state whose channels were collapsed cannot be reshaped (an error says so)."""

import operator

import torch

from xinc.canvas.kinds.base import Kind, Op, register_kind
from xinc.errors import XincError


@register_kind
class Layout(Kind):
    name = "layout"
    functions = (torch.permute, torch.transpose, torch.reshape, torch.flatten, torch.squeeze, torch.unsqueeze,
                 operator.getitem, torch.movedim)
    methods = ("permute", "transpose", "view", "reshape", "flatten", "squeeze", "unsqueeze", "contiguous",
               "movedim", "unflatten", "repeat", "expand", "expand_as")
    paper_note = "layout changes -> the same change"

    def check(self, op: Op) -> str | None:
        if not isinstance(op.out, torch.Tensor):
            return "a non-tensor result"
        return None

    def linear(self, op: Op, ts: list[torch.Tensor]) -> torch.Tensor:
        return torch.func.vmap(op.fn())(ts[0])

    def paper(self, op: Op, ss: list[torch.Tensor]) -> torch.Tensor:
        try:
            return torch.func.vmap(op.fn())(ss[0])
        except RuntimeError as e:
            raise XincError(f"{op.where}: cannot reshape a paper-mode contribution whose channels a mean filter "
                            f"collapsed ({e}); use mode='linear'") from None
