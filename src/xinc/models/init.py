"""Parameter initialisation from an explicit generator, so a model built with one never reads the global RNG."""

from __future__ import annotations

import math

import torch
from torch import nn


def default_init_(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Redraw every Linear/Conv weight and bias with PyTorch's default scheme, U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    (what kaiming_uniform_(a=sqrt(5)) gives), from `generator`; returns the module."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
                bound = 1.0 / math.sqrt(max(1, m.weight[0].numel()))
                m.weight.uniform_(-bound, bound, generator=generator)
                if m.bias is not None:
                    m.bias.uniform_(-bound, bound, generator=generator)
    return module
