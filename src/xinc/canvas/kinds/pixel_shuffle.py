"""Kind pixel_shuffle: nn.PixelShuffle / F.pixel_shuffle. Linear: the shuffle itself (exact routing); paper:
the shuffle while a neuron's channels are still resolved (its own routing), nearest upsampling once a mean
filter has collapsed them (the paper's stand-in)."""

import torch
import torch.nn.functional as F
from torch import nn

from xinc.canvas.kinds.base import Kind, Op, register_kind


def _factor(op: Op) -> int:
    return op.module.upscale_factor if op.module is not None else int(op.arg(1, "upscale_factor"))


@register_kind
class PixelShuffle(Kind):
    name = "pixel_shuffle"
    modules = (nn.PixelShuffle,)
    functions = (F.pixel_shuffle, torch.pixel_shuffle)
    paper_note = "PixelShuffle -> exact routing of the neuron's own channel, nearest upsampling after a collapse"

    def linear(self, op: Op, ts: list[torch.Tensor]) -> torch.Tensor:
        return F.pixel_shuffle(ts[0], _factor(op))  # acts on the last three dims, any leading ones

    def paper(self, op: Op, ss: list[torch.Tensor]) -> torch.Tensor:
        s, r = ss[0], _factor(op)
        if s.shape[-3] == op.input_value().shape[-3]:
            return F.pixel_shuffle(s, r)
        lead = s.shape[:-2]
        up = F.interpolate(s.reshape(-1, 1, *s.shape[-2:]), scale_factor=r, mode="nearest")
        return up.reshape(*lead, *up.shape[-2:])
