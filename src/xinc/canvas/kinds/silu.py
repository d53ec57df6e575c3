"""Kind silu: SiLU / swish. Linear: the local slope; paper: applied per neuron."""

import torch.nn.functional as F
from torch import nn

from xinc.canvas.kinds.base import Elementwise, register_kind


@register_kind
class Silu(Elementwise):
    name = "silu"
    modules = (nn.SiLU,)
    functions = (F.silu,)
    methods = ("silu",)
    piecewise_linear = False
