"""Kind pixel_shuffle: nn.PixelShuffle / F.pixel_shuffle. Linear: the shuffle itself (exact routing); paper:
the shuffle while a neuron's channels are still resolved (its own routing), nearest upsampling once a mean
filter has collapsed them (the paper's stand-in)."""

import torch
import torch.nn.functional as F
from torch import nn

from xinc.canvas.kinds.base import Kind, OneHot, Op, register_kind


def _factor(op: Op) -> int:
    return op.module.upscale_factor if op.module is not None else int(op.arg(1, "upscale_factor"))


@register_kind
class PixelShuffle(Kind):
    name = "pixel_shuffle"
    modules = (nn.PixelShuffle,)
    functions = (F.pixel_shuffle, torch.pixel_shuffle)
    paper_note = "PixelShuffle -> exact routing of the neuron's own channel, nearest upsampling after a collapse"
    onehot = True

    def _route(self, t: OneHot, r: int) -> OneHot:
        """Channel c -> channel c // r^2 at sub-pixel c % r^2: still one channel per neuron."""
        n, lead, (h, w) = t.vals.shape[0], t.vals.shape[1:-2], t.vals.shape[-2:]
        tmp = t.vals.new_zeros(n, *lead, r * r, h, w)
        tmp.view(n, -1, r * r, h, w)[torch.arange(n, device=tmp.device), :, t.chan % (r * r)] = \
            t.vals.reshape(n, -1, h, w)
        return t.like(F.pixel_shuffle(tmp, r).squeeze(-3), t.chan // (r * r), t.channels // (r * r))

    def linear(self, op: Op, ts: list) -> torch.Tensor | OneHot:
        t = ts[0]
        if isinstance(t, OneHot):
            return self._route(t, _factor(op)) if t.cdim == -3 else self.linear(op, [t.dense()])
        return F.pixel_shuffle(t, _factor(op))  # acts on the last three dims, any leading ones

    def paper(self, op: Op, ss: list) -> torch.Tensor | OneHot:
        if isinstance(ss[0], OneHot):
            return self.linear(op, ss)  # still the neuron's own channel: exact routing
        s, r = ss[0], _factor(op)
        if s.shape[-3] == op.input_value().shape[-3]:
            return F.pixel_shuffle(s, r)
        lead = s.shape[:-2]
        up = F.interpolate(s.reshape(-1, 1, *s.shape[-2:]), scale_factor=r, mode="nearest")
        return up.reshape(*lead, *up.shape[-2:])
