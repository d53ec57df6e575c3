"""`CanvasConfig`: the settings of `run_canvas` (and of `xinc canvas`, which parses this dataclass with tyro)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from xinc.errors import XincError
from xinc.validate import finite_positive, optional, path_in, path_out, positive_int


@dataclass
class CanvasConfig:
    """Compute implicit neural canvases (every neuron's signed contribution map) into OUT/canvas.zarr.

    Neurons are flattened c_in-major (k = c_in*C_out + c_out for conv layers, k = c_in for MLP layers).
    The store is written in OUT.partial and renamed to OUT when complete; an interrupted run resumes
    from OUT.partial frame by frame when rerun with the same options. A PNG grid of each layer's
    strongest neurons goes to OUT/figures/.
    """

    out: Path
    """output folder (holds config.json, canvas.zarr/ and figures/)"""
    model_dir: tyro.conf.Positional[Path | None] = None
    """model directory written by `xinc train` or `xinc import` (or use --model for any PyTorch model)"""
    model: str | None = None
    """a foreign model instead of MODEL_DIR: package.module:factory, a function returning the torch.nn.Module
    (imported from the current directory first; its code runs)"""
    weights: Path | None = None
    """safetensors state dict loaded into --model (strict)"""
    grid: str | None = None
    """HxW: feed --model an (H, W, 2) coordinate grid, each axis linspace(-1, 1)"""
    inputs: Path | None = None
    """safetensors file of --model's forward arguments (input0, input1, ... or one tensor)"""
    output: str | None = None
    """--model: module path whose output the canvas decomposes (default the model's output)"""
    generic: bool = False
    """--model: linearise operations without a registered kind by torch.func instead of stopping"""
    layers: str | None = None
    """comma-separated layers in paper naming (layer1..3 for the FFN, block1..N and head for NeRV), or Linear/Conv2d
    module paths of a --model; default all"""
    frames: str | None = None
    """frames, e.g. 0,17 or 0-5; default all frames of the video (the FFN has frame 0 only)"""
    mode: Literal["paper", "linear"] = "paper"
    """paper = the paper's rules (approximate for blocks); linear = exact linearised propagation"""
    device: str = "auto"
    """auto | cpu | cuda[:i]"""
    chunk_neurons: int | None = None
    """neurons per computed chunk (default: from the memory budget)"""
    memory_budget_mb: float | None = None
    """working memory per chunk in MiB (default 32 on CPU, where cache-sized chunks are fastest; 1024 on CUDA)"""
    dtype: Literal["float32", "float16"] = "float32"
    """storage dtype of the maps (computation is always float32)"""
    per_channel: bool = False
    """store (K, 3, H, W) per-RGB-channel maps where the rule has them (MLP layers, head, linear-mode blocks)"""
    maps: bool = True
    """store every neuron's map; False stores only the heat map and per-neuron totals, which the rules then
    reduce without forming maps (a whole 640x1280 HNeRV layer in minutes, a few MB on disk)"""
    top: int = 16
    """neurons shown in each layer's PNG grid (strongest by total |C| in the first frame)"""
    overwrite: bool = False
    """replace an existing OUT"""
    progress: bool = True
    """show a tqdm progress bar on stderr"""

    def __post_init__(self) -> None:
        """The numbers, checked when the config is made (before any model is loaded)."""
        positive_int(self.top, "--top")
        optional(positive_int, self.chunk_neurons, "--chunk-neurons")
        optional(finite_positive, self.memory_budget_mb, "--memory-budget-mb")
        if self.layers is not None and not [s for s in self.layers.split(",") if s.strip()]:
            raise XincError(f"--layers {self.layers!r}: names no layer ; give e.g. layer1,layer2 or leave it out "
                            "for all")

    def inputs_read(self) -> list[Path]:
        """The files and folders this run reads (never written or replaced)."""
        return [Path(p) for p in (self.model_dir, self.weights, self.inputs) if p is not None]

    def check_paths(self) -> None:
        """The inputs exist and OUT may be written (run by `run_canvas` before any work)."""
        if self.model_dir is not None:
            path_in(self.model_dir, "MODEL_DIR", kind="dir")
        for path, flag in ((self.weights, "--weights"), (self.inputs, "--inputs")):
            if path is not None:
                path_in(path, flag, kind="file")
        path_out(self.out, inputs=self.inputs_read(), overwrite=self.overwrite)
