"""Coordinate MLPs for one image: the paper's Fourier-feature FFN, and SIREN-style sine MLPs."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from xinc.models.encodings import FourierFeatures, pixel_coords
from xinc.models.init import default_init_
from xinc.models.trace import Trace

ACTIVATIONS = ("relu", "sine", "gelu", "tanh")


@dataclass
class FFNConfig:
    """Everything needed to rebuild an FFN (defaults = the paper's model, 32,971 parameters)."""

    kind: str = "ffn"
    height: int = 128
    width: int = 256
    hidden: int = 104
    layers: int = 3
    encoding: str = "fourier"  # "fourier" (Gaussian Fourier features) or "none" (raw coordinates)
    sigma: float = 10.0
    num_features: int | None = None  # L; None = hidden (the paper ties L to the width)
    activation: str = "relu"  # relu | sine (SIREN) | gelu | tanh
    w0: float = 30.0  # SIREN frequency of hidden layers
    w0_initial: float = 30.0  # SIREN frequency of the first layer
    in_dim: int = 2
    out_dim: int = 3

    def validate(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r}: choose one of {', '.join(ACTIVATIONS)}")
        if self.encoding not in ("fourier", "none"):
            raise ValueError(f"encoding {self.encoding!r}: choose fourier or none")
        if self.layers < 1 or self.hidden < 1 or self.height < 1 or self.width < 1:
            raise ValueError("layers, hidden, height and width must be positive")
        if self.sigma <= 0:
            raise ValueError(f"sigma {self.sigma}: must be positive")

    @classmethod
    def from_dict(cls, d: dict) -> FFNConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class FFN(nn.Module):
    """MLP from (row, col) to RGB. `trace` returns every linear layer's input (the canvas needs them).

    With `generator`, every random draw (Fourier matrix, weights, biases) comes from it, not the global RNG."""

    def __init__(self, config: FFNConfig, generator: torch.Generator | None = None):
        super().__init__()
        config.validate()
        self.config = config
        L = config.num_features or config.hidden
        if config.encoding == "fourier":
            self.encoding: nn.Module | None = FourierFeatures(config.in_dim, L, config.sigma, generator)
            in_dim = 2 * L
        else:
            self.encoding = None
            in_dim = config.in_dim
        dims = [in_dim] + [config.hidden] * (config.layers - 1) + [config.out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        if config.activation == "sine":
            self._siren_init(generator)
        elif generator is not None:  # every parameter from the generator, none from the global RNG
            default_init_(self.layers, generator)

    def _siren_init(self, generator: torch.Generator | None) -> None:
        with torch.no_grad():
            for i, layer in enumerate(self.layers):
                n = layer.in_features
                bound = 1.0 / n if i == 0 and self.encoding is None else math.sqrt(6.0 / n) / self.config.w0
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-1 / math.sqrt(n), 1 / math.sqrt(n), generator=generator)

    @property
    def layer_names(self) -> list[str]:
        """Paper names: layer l = the inputs of linear layer l (layer1 = the encoded coordinates)."""
        return [f"layer{i + 1}" for i in range(len(self.layers))]

    def activation(self, index: int, z: torch.Tensor) -> torch.Tensor:
        """Activation applied after linear layer `index` (0-based); identity after the last."""
        if index == len(self.layers) - 1:
            return z
        act = self.config.activation
        if act == "relu":
            return torch.relu(z)
        if act == "sine":
            w0 = self.config.w0_initial if index == 0 else self.config.w0
            return torch.sin(w0 * z)
        if act == "gelu":
            return torch.nn.functional.gelu(z)
        return torch.tanh(z)

    def output_activation(self, z: torch.Tensor) -> torch.Tensor:
        """The output activation (canvas protocol): none, the FFN's last layer is linear."""
        return z

    def coords(self, device: torch.device | str | None = None) -> torch.Tensor:
        return pixel_coords(self.config.height, self.config.width, device)

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        return coords if self.encoding is None else self.encoding(coords)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        h = self.encode(coords)
        for i, layer in enumerate(self.layers):
            h = self.activation(i, layer(h))
        return h

    def trace(self, coords: torch.Tensor | None = None) -> Trace:
        """Run on `coords` (default: the full pixel grid) and keep each layer's input and pre-activation."""
        if coords is None:
            coords = self.coords(self.layers[0].weight.device)
        tr = Trace()
        h = self.encode(coords)
        for i, layer in enumerate(self.layers):
            name = f"layer{i + 1}"
            tr.inputs[name] = h
            z = layer(h)
            tr.pre[name] = z
            h = self.activation(i, z)
        tr.output = h
        return tr

    def render(self, coords: torch.Tensor | None = None) -> torch.Tensor:
        """The image as (3, H, W) (unclamped)."""
        if coords is None:
            coords = self.coords(self.layers[0].weight.device)
        out = self(coords)
        return out.t().reshape(self.config.out_dim, self.config.height, self.config.width)
