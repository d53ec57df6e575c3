"""Kind sine: sin, the SIREN activation (its frequency w0 is the multiplication before it, kind 'mul').

Linear: the local slope; paper: applied per neuron."""

import torch

from xinc.canvas.kinds.base import Elementwise, register_kind


@register_kind
class Sine(Elementwise):
    name = "sine"
    modules = ()
    functions = (torch.sin,)
    methods = ("sin",)
    piecewise_linear = False
