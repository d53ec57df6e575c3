"""Kind tanh: tanh. Linear: the local slope; paper: applied per neuron."""

import torch
import torch.nn.functional as F
from torch import nn

from xinc.canvas.kinds.base import Elementwise, register_kind


@register_kind
class Tanh(Elementwise):
    name = "tanh"
    modules = (nn.Tanh,)
    functions = (torch.tanh, F.tanh,)
    methods = ("tanh",)
    piecewise_linear = False
