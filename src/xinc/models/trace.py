"""The record of one forward pass that the canvas engine reads: each layer's input and pre-activation."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Trace:
    """inputs[name] feeds layer `name`; pre[name] is that layer's pre-activation output.

    FFN: inputs are (P, n) and pre are (P, m). NeRV: inputs are (B, C, h, w); for a PixelShuffle
    block pre[name] is the conv output before the shuffle and post[name] the shuffled map before GELU.
    """

    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    pre: dict[str, torch.Tensor] = field(default_factory=dict)
    post: dict[str, torch.Tensor] = field(default_factory=dict)
    output: torch.Tensor | None = None
