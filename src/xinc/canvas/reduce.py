"""Streaming reductions over canvas chunks, so no caller ever needs a whole layer in memory.

A reducer sees, for each frame, the signed maps of consecutive neuron ranges (chunks), in order:
    begin_frame(info, frame) -> update(start, maps) ... -> end_frame()
and finally result(). `maps` is a (n, H, W) float tensor of neurons [start, start+n) (or
(n, C, H, W) for per-output-channel canvases). Analyses write their own reducers on this protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class LayerInfo:
    """What a reducer needs to know about the layer being streamed."""

    name: str
    num_neurons: int
    height: int
    width: int
    exact: bool
    rule: str
    c_in: int | None = None
    c_out: int | None = None


class Reducer:
    """Base class: override update(); begin_frame/end_frame/result are optional."""

    def begin_frame(self, info: LayerInfo, frame: int) -> None:
        self.info, self.frame = info, frame

    def update(self, start: int, maps: torch.Tensor) -> None:
        raise NotImplementedError

    def end_frame(self) -> None:
        pass

    def result(self) -> Any:
        raise NotImplementedError
