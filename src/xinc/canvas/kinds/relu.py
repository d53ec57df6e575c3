"""Kind relu: ReLU, max(0, x) (piecewise linear: exact in linear mode).

Linear: the local slope; paper: applied per neuron."""

import torch
import torch.nn.functional as F
from torch import nn

from xinc.canvas.kinds.base import Elementwise, register_kind


@register_kind
class Relu(Elementwise):
    name = "relu"
    modules = (nn.ReLU,)
    functions = (F.relu, torch.relu, torch.relu_,)
    methods = ("relu", "relu_",)
    piecewise_linear = True
