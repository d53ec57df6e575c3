"""Where `run_canvas` and `analyze` get canvases: our model directories (fast rules) or a foreign model.

A foreign model is `--model package.module:factory` (a function returning the torch.nn.Module; the module is
imported from the current directory first, then sys.path) with a safetensors state dict `--weights`, fed either
an (H, W, 2) coordinate grid (`--grid HxW`) or the tensors of a safetensors file (`--inputs`).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xinc.canvas.engine import layer_info, num_frames, stream_canvas
from xinc.canvas.reduce import LayerInfo
from xinc.errors import XincError
from xinc.utils import parse_hw, parse_index_list, read_json


def load_factory(spec: str) -> nn.Module:
    """Call 'package.module:factory' (imported with the current directory first on sys.path)."""
    mod_name, sep, attr = spec.partition(":")
    if not sep or not mod_name or not attr:
        raise XincError(f"--model {spec!r}: expected package.module:factory ; e.g. my_inr:build")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(mod_name)
    except ImportError as e:
        raise XincError(f"--model {spec!r}: cannot import {mod_name} ({e}) ; run from the folder holding it or add "
                        "it to PYTHONPATH") from None
    finally:
        if added:
            sys.path.remove(cwd)
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise XincError(f"--model {spec!r}: {mod_name} has no callable {attr!r} ; name a function returning the model")
    model = factory()
    if not isinstance(model, nn.Module):
        raise XincError(f"--model {spec!r}: {attr}() returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def load_weights(model: nn.Module, path: Path) -> str:
    """Load a safetensors state dict into the model (strict); returns the file's sha256."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise XincError(f"--weights {path}: no such file ; give the model's .safetensors state dict")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise XincError(f"--weights {path}: not a readable safetensors file ({e}) ; save it with "
                        "safetensors.torch.save_file(model.state_dict(), path)") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        lines = [x.strip() for x in str(e).splitlines() if x.strip()][1:3]
        raise XincError(f"--weights {path}: does not match the model ({' '.join(lines)}) ; save the state dict of "
                        "the same architecture") from None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def coordinate_grid(h: int, w: int) -> torch.Tensor:
    """(h, w, 2) float32 (row, col) coordinates, each axis linspace(-1, 1) (the SIREN convention)."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    return torch.stack([ys, xs], -1)


def load_inputs(grid: str | None, inputs: Path | None) -> tuple[torch.Tensor, ...]:
    """The model's forward arguments: a coordinate grid or the tensors of a safetensors file (input0, input1, ...
    or its only tensor)."""
    if (grid is None) == (inputs is None):
        raise XincError("--model needs exactly one of --grid HxW (a coordinate grid) or --inputs FILE.safetensors")
    if grid is not None:
        return (coordinate_grid(*parse_hw(grid, "--grid")),)
    from safetensors.torch import load_file

    if not inputs.is_file():
        raise XincError(f"--inputs {inputs}: no such file ; save the forward's tensors with safetensors")
    try:
        tensors = load_file(str(inputs))
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise XincError(f"--inputs {inputs}: not a readable safetensors file ({e}) ; save with "
                        "safetensors.torch.save_file({'input0': x}, path)") from None
    if len(tensors) == 1:
        return tuple(tensors.values())
    keys = [f"input{i}" for i in range(len(tensors))]
    if sorted(tensors) != sorted(keys):
        raise XincError(f"--inputs {inputs}: tensors {sorted(tensors)} ; name them input0, input1, ... in the "
                        "order forward takes them")
    return tuple(tensors[k] for k in keys)


class OwnSource:
    """Our model directory: canvas layers in paper naming, the fast rules."""

    def __init__(self, model_dir: Path, device: torch.device, opts, stream=stream_canvas) -> None:
        from xinc.models.io import load_model

        self.stream_canvas = stream  # the caller's stream_canvas (tests interrupt it)
        self.model = load_model(model_dir, device)
        self.model_cfg = read_json(model_dir / "config.json")["model"]
        self.names = list(self.model.layer_names)
        self.opts = opts

    def frames(self, text: str | None) -> list[int]:
        return parse_index_list(text, num_frames(self.model), "--frames")

    def info(self, layer: str) -> LayerInfo:
        if layer not in self.names:
            raise XincError(f"--layers: layer {layer!r} does not exist in this model; choose from "
                            f"{', '.join(self.names)}")
        return layer_info(self.model, layer, self.opts.mode, self.opts.per_channel)

    def stream(self, layer: str, frame: int, reducers: list, progress) -> dict[str, float]:
        o = self.opts
        return self.stream_canvas(self.model, layer, [frame], reducers, mode=o.mode, per_channel=o.per_channel,
                             chunk_neurons=o.chunk_neurons, memory_budget_mb=o.memory_budget_mb,
                             progress=progress)[frame]

    def neuron_maps(self, layer: str, frame: int, neurons: list[int]) -> torch.Tensor:
        from xinc.canvas.engine import compute_canvas, trace_frame

        tr = trace_frame(self.model, frame)  # clone: each kept map in a fresh small block, not one that pins the
        # heap between the per-neuron runs' freed buffers (16 HNeRV block5 maps: 2.76 -> 1.22 GB peak RSS)
        return torch.stack([compute_canvas(self.model, layer, frame, mode=self.opts.mode,
                                           per_channel=self.opts.per_channel, neurons=(k, k + 1),
                                           trace=tr).maps[0].clone() for k in neurons])


class ForeignSource:
    """A foreign model (--model module:factory): layers are Linear/Conv2d module paths, one frame (0)."""

    def __init__(self, device: torch.device, opts) -> None:
        self.model = load_factory(opts.model).to(device).eval()
        digest = load_weights(self.model, opts.weights) if opts.weights is not None else None
        self.inputs = load_inputs(opts.grid, opts.inputs)
        self.opts = opts
        self.model_cfg: dict[str, Any] = {
            "kind": "foreign", "factory": opts.model, "class": type(self.model).__name__,
            "weights": None if opts.weights is None else str(Path(opts.weights).resolve()), "weights_sha256": digest,
            "grid": opts.grid, "inputs": None if opts.inputs is None else str(Path(opts.inputs).resolve()),
            "output": opts.output}
        from xinc.canvas.graph import LAYER_TYPES, trace_module

        gm = trace_module(self.model)
        self.names = [n.target for n in gm.graph.nodes
                      if n.op == "call_module" and isinstance(gm.get_submodule(n.target), LAYER_TYPES)]

    def frames(self, text: str | None) -> list[int]:
        return parse_index_list(text, 1, "--frames")

    def _kw(self) -> dict[str, Any]:
        o = self.opts
        return dict(per_channel=getattr(o, "per_channel", False), output=o.output, generic=getattr(o, "generic", False),
                    chunk_neurons=o.chunk_neurons, memory_budget_mb=o.memory_budget_mb)

    def info(self, layer: str) -> LayerInfo:
        from xinc.canvas.explainer import generic_run

        return generic_run(self.model, self.inputs, layer, self.opts.mode, **self._kw()).info

    def stream(self, layer: str, frame: int, reducers: list, progress) -> dict[str, float]:
        from xinc.canvas.explainer import explain_stream

        return explain_stream(self.model, self.inputs, layer, reducers, self.opts.mode, engine="generic",
                              progress=progress, **self._kw())

    def neuron_maps(self, layer: str, frame: int, neurons: list[int]) -> torch.Tensor:
        from xinc.canvas.explainer import explain

        kw = self._kw()
        return torch.stack([explain(self.model, self.inputs, layer, self.opts.mode, engine="generic",
                                    neurons=(k, k + 1), **kw).maps[0] for k in neurons])


def open_source(opts, device: torch.device, stream=stream_canvas):
    """The canvas source named by the options (exactly one of MODEL_DIR or --model); `stream` streams our
    models' canvases (xinc.canvas.stream_canvas)."""
    if (opts.model_dir is None) == (opts.model is None):
        raise XincError("model: give exactly one of MODEL_DIR (an xinc model directory) or --model "
                        "package.module:factory (a foreign torch.nn.Module)")
    if opts.model is None:
        if any(v is not None for v in (opts.weights, opts.grid, opts.inputs, opts.output)) or opts.generic:
            raise XincError("--weights/--grid/--inputs/--output/--generic are for a foreign --model ; an xinc model "
                            "directory carries its own")
        return OwnSource(opts.model_dir, device, opts, stream)
    return ForeignSource(device, opts)
