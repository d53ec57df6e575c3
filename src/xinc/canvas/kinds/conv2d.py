"""Kind conv2d: nn.Conv2d downstream of the layer (any kernel, stride, padding, dilation, groups). Linear: the
convolution without bias, bias as offset; paper: channels summed, then a mean filter of the kernel size."""

import torch
import torch.nn.functional as F
from torch import nn

from xinc.canvas.kinds.base import Kind, OneHot, Op, batched, register_kind


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
    onehot = True

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

    def _onehot(self, op: Op, t: OneHot) -> torch.Tensor | OneHot:
        """One input channel per neuron: one grouped conv with each neuron's filters (groups = neurons); a
        depthwise conv keeps the state one-hot."""
        conv, w = op.module, op.module.weight.detach()
        x = t.vals if t.vals.dim() == 4 else t.vals.unsqueeze(1)  # (n, N, h, w)
        n, N = x.shape[:2]
        depthwise = conv.groups == conv.in_channels == conv.out_channels
        if depthwise:
            k = w.index_select(0, t.chan)  # (n, 1, kh, kw)
        elif conv.groups == 1:
            k = w[:, t.chan].transpose(0, 1).reshape(n * w.shape[0], 1, *w.shape[-2:])
        else:
            return self._conv(op, t.dense(), w, conv.groups)
        src, pad = conv_padded(conv, x.transpose(0, 1))  # (N, n, h, w)
        y = F.conv2d(src, k, None, conv.stride, pad, conv.dilation, n)  # (N, n * outputs per neuron, h', w')
        if depthwise:
            y = y.transpose(0, 1)
            return t.like(y if t.vals.dim() == 4 else y[:, 0])
        y = y.reshape(N, n, w.shape[0], *y.shape[-2:]).transpose(0, 1)
        return y if t.vals.dim() == 4 else y[:, 0]

    def linear(self, op: Op, ts: list) -> torch.Tensor | OneHot:
        if isinstance(ts[0], OneHot) and ts[0].cdim == -3:
            return self._onehot(op, ts[0])
        t = ts[0].dense() if isinstance(ts[0], OneHot) else ts[0]
        return self._conv(op, t, op.module.weight.detach(), op.module.groups)

    def offset(self, op: Op) -> torch.Tensor | None:
        b = op.module.bias
        return None if b is None else b.detach()[:, None, None]

    def paper(self, op: Op, ss: list) -> torch.Tensor:
        s = ss[0]
        if isinstance(s, OneHot) and s.cdim == -3:
            s = s.vals.unsqueeze(-3)  # channels summed = the neuron's own channel
        elif isinstance(s, OneHot):
            s = s.dense()
        conv, s = op.module, s.sum(-3, keepdim=True)
        (kh, kw), (ph, pw) = conv.kernel_size, conv.padding if not isinstance(conv.padding, str) else (-1, -1)
        if conv.padding_mode == "zeros" and conv.dilation == (1, 1) and 0 <= ph <= kh // 2 and 0 <= pw <= kw // 2:
            # the zero-padded mean filter as an average pool (count_include_pad): no im2col workspace
            return batched(lambda x: F.avg_pool2d(x, (kh, kw), conv.stride, (ph, pw), count_include_pad=True),
                           s, op.out.dim(), 4)
        return self._conv(op, s, s.new_full((1, 1, kh, kw), 1.0 / (kh * kw)), 1)
