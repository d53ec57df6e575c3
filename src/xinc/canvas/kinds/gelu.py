"""Kind gelu: GELU. Linear: the local slope; paper: applied per neuron."""

import torch.nn.functional as F
from torch import nn

from xinc.canvas.kinds.base import Elementwise, register_kind


@register_kind
class Gelu(Elementwise):
    name = "gelu"
    modules = (nn.GELU,)
    functions = (F.gelu,)
    methods = ("gelu",)
    piecewise_linear = False
