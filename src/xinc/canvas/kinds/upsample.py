"""Kind upsample: nn.Upsample / F.interpolate (nearest, bilinear, bicubic, ...: linear in their input). Both
modes apply the same resampling to each neuron's contribution (the paper's 'upsampling -> same upsampling')."""

import torch
import torch.nn.functional as F
from torch import nn

from xinc.canvas.kinds.base import Kind, Op, batched, register_kind

LINEAR_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "bicubic", "trilinear", "area")


def _mode(op: Op) -> str:
    return op.module.mode if op.module is not None else op.arg(3, "mode", "nearest")


@register_kind
class Upsample(Kind):
    name = "upsample"
    modules = (nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d)
    functions = (F.interpolate, F.upsample)
    paper_note = "upsampling -> the same upsampling"

    def check(self, op: Op) -> str | None:
        return None if _mode(op) in LINEAR_MODES else f"interpolation mode {_mode(op)!r}"

    def _apply(self, op: Op, t: torch.Tensor) -> torch.Tensor:
        x = op.input_value()
        return batched(lambda v: op.call({op.inputs[0]: v}), t, x.dim(), x.dim())

    def linear(self, op: Op, ts: list[torch.Tensor]) -> torch.Tensor:
        return self._apply(op, ts[0])

    def paper(self, op: Op, ss: list[torch.Tensor]) -> torch.Tensor:
        return self._apply(op, ss[0])
