"""Kind upsample: nn.Upsample / F.interpolate (nearest, bilinear, bicubic, ...: linear in their input). Both
modes apply the same resampling to each neuron's contribution (the paper's 'upsampling -> same upsampling')."""

import torch
import torch.nn.functional as F
from torch import nn

from xinc.canvas.kinds.base import Kind, OneHot, Op, batched, register_kind

LINEAR_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area")


def _mode(op: Op) -> str:
    return op.module.mode if op.module is not None else op.arg(3, "mode", "nearest")


@register_kind
class Upsample(Kind):
    name = "upsample"
    modules = (nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d)
    functions = (F.interpolate, F.upsample)
    paper_note = "upsampling -> the same upsampling"
    onehot = True

    def check(self, op: Op) -> str | None:
        return None if _mode(op) in LINEAR_MODES else f"interpolation mode {_mode(op)!r}"

    def _apply(self, op: Op, t) -> torch.Tensor | OneHot:
        x = op.input_value()
        if isinstance(t, OneHot) and t.cdim == -3 and x.dim() == 4:  # channel-wise: resample each neuron's map
            v = t.vals.reshape(-1, 1, *t.vals.shape[-2:])
            y = op.call({op.inputs[0]: v})
            return t.like(y.reshape(*t.vals.shape[:-2], *y.shape[-2:]))
        t = t.dense() if isinstance(t, OneHot) else t
        return batched(lambda v: op.call({op.inputs[0]: v}), t, x.dim(), x.dim())

    def linear(self, op: Op, ts: list[torch.Tensor]) -> torch.Tensor:
        return self._apply(op, ts[0])

    def paper(self, op: Op, ss: list[torch.Tensor]) -> torch.Tensor:
        return self._apply(op, ss[0])
