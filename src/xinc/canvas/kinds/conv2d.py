"""Kind conv2d: nn.Conv2d downstream of the layer (any kernel, stride, padding, dilation, groups). Linear: the
convolution without bias, bias as offset; paper: channels summed, then a mean filter of the kernel size."""

import torch
import torch.nn.functional as F
from torch import nn

from xinc.canvas.kinds.base import Kind, Op, batched, register_kind


def conv_padded(conv: nn.Conv2d, x: torch.Tensor) -> tuple[torch.Tensor, object]:
    """(input padded as the layer pads it when its padding mode is not zeros, padding to give F.conv2d)."""
    if conv.padding_mode == "zeros":
        return x, conv.padding
    ph, pw = conv.padding
    return F.pad(x, (pw, pw, ph, ph), mode=conv.padding_mode), 0


@register_kind
class Conv2d(Kind):
    name = "conv2d"
    modules = (nn.Conv2d,)
    paper_note = "Conv2d -> channels summed, mean filter of its kernel size (same stride/padding/dilation)"

    def check(self, op: Op) -> str | None:
        conv = op.module
        if conv.padding_mode != "zeros" and isinstance(conv.padding, str):
            return f"padding={conv.padding!r} with padding_mode={conv.padding_mode!r}"
        return None

    def _conv(self, op: Op, t: torch.Tensor, weight: torch.Tensor, groups: int) -> torch.Tensor:
        conv = op.module

        def f(x):
            x, pad = conv_padded(conv, x)
            return F.conv2d(x, weight, None, conv.stride, pad, conv.dilation, groups)

        return batched(f, t, op.out.dim(), 4)

    def linear(self, op: Op, ts: list[torch.Tensor]) -> torch.Tensor:
        return self._conv(op, ts[0], op.module.weight.detach(), op.module.groups)

    def offset(self, op: Op) -> torch.Tensor | None:
        b = op.module.bias
        return None if b is None else b.detach()[:, None, None]

    def paper(self, op: Op, ss: list[torch.Tensor]) -> torch.Tensor:
        kh, kw = op.module.kernel_size
        box = ss[0].new_full((1, 1, kh, kw), 1.0 / (kh * kw))
        return self._conv(op, ss[0].sum(-3, keepdim=True), box, 1)
