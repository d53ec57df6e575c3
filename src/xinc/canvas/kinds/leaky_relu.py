"""Kind leaky_relu: LeakyReLU (piecewise linear: exact in linear mode).

Linear: the local slope; paper: applied per neuron."""

import torch.nn.functional as F
from torch import nn

from xinc.canvas.kinds.base import Elementwise, register_kind


@register_kind
class LeakyRelu(Elementwise):
    name = "leaky_relu"
    modules = (nn.LeakyReLU,)
    functions = (F.leaky_relu,)
    methods = ("leaky_relu",)
    piecewise_linear = True
