"""The canvas model protocol: what the canvas engine and the analyses ask of a model, in one place.

A model speaks the protocol when it has `layer_names` (its canvas layers in paper naming), `trace(...)` (one
forward pass keeping every layer's input, xinc.models.trace.Trace) and `config` with `height`/`width`; video
models also take frame indices (`config.num_frames`, `trace(frames)`). Our FFN and NeRV/HNeRV implement it;
any other torch.nn.Module goes through the generic engine (xinc.explain) instead. These helpers replace the
"is this a video model?" idioms scattered over the code.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class CanvasModel(Protocol):
    """A model with named canvas layers and its own trace (xinc's FFN, NeRV, HNeRV)."""

    config: object

    @property
    def layer_names(self) -> list[str]: ...

    def trace(self, *args, **kwargs): ...

    def output_activation(self, z: torch.Tensor) -> torch.Tensor: ...


def is_canvas_model(model) -> bool:
    """Whether `model` speaks the protocol (our own models), so the fast rules apply to its layers."""
    return isinstance(model, CanvasModel) and hasattr(getattr(model, "config", None), "height")


def takes_frames(model) -> bool:
    """Whether the model is queried by frame index (a video model: NeRV/HNeRV), not by pixel coordinates."""
    return is_canvas_model(model) and getattr(model.config, "num_frames", None) is not None


def frames(model) -> int:
    """Frames the model can be queried at (an image model is one frame, index 0)."""
    return int(model.config.num_frames) if takes_frames(model) else 1


def canvas_layers(model) -> list[str]:
    """The model's canvas layers in paper naming."""
    return list(model.layer_names)


def output_activation(model, z: torch.Tensor) -> torch.Tensor:
    """The model's output activation applied to pre-activation logits z (identity for an FFN)."""
    return model.output_activation(z)
