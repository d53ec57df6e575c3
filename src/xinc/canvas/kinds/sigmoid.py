"""Kind sigmoid: logistic sigmoid. Linear: the local slope; paper: applied per neuron."""

import torch
import torch.nn.functional as F
from torch import nn

from xinc.canvas.kinds.base import Elementwise, register_kind


@register_kind
class Sigmoid(Elementwise):
    name = "sigmoid"
    modules = (nn.Sigmoid,)
    functions = (torch.sigmoid, F.sigmoid,)
    methods = ("sigmoid",)
    piecewise_linear = False
