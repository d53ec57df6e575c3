"""`AnalyzeConfig`: the settings of `xinc.analysis.analyze` (and of `xinc analyze`, which parses it with tyro)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from xinc.config import REPEATABLE
from xinc.data.datasets import dataset_names
from xinc.errors import XincError
from xinc.validate import finite_positive, non_negative_int, optional, path_in, path_out, positive_int

DatasetName = Literal[dataset_names()]  # the --dataset choices come from the dataset registry


@dataclass
class AnalyzeConfig:
    """Run the paper's analyses of the implicit neural canvas (A1 intensity/edges, A2 distributed, A3 objects,
    A4 motion, A5 selectivity, A6 clusters) on a model directory; write figures (PNG+PDF), tables (CSV) and
    results.json. All canvases are streamed in neuron chunks (a few GB of RAM for any layer)."""

    out: Path
    """output run directory (replaced atomically)"""
    model_dir: tyro.conf.Positional[Path | None] = None
    """model directory from `xinc train` or `xinc import` (or --model for any PyTorch model)"""
    model: str | None = None
    """a foreign model instead of MODEL_DIR: package.module:factory returning the torch.nn.Module (its code runs;
    analysed on its own output as the image, one frame)"""
    weights: Path | None = None
    """safetensors state dict loaded into --model (strict)"""
    grid: str | None = None
    """HxW: feed --model an (H, W, 2) coordinate grid, each axis linspace(-1, 1)"""
    inputs: Path | None = None
    """safetensors file of --model's forward arguments (input0, input1, ... or one tensor)"""
    output: str | None = None
    """--model: module path whose output the canvases decompose (default the model's output)"""
    analyses: str | None = None
    """comma-separated analysis ids (a1..a6) or 'all' (default: all; those whose data is missing are
    skipped with a reason; ids named here fail instead)"""
    dataset: DatasetName | None = None
    """panoptic dataset of the clip (gives the labels A3/A5 use)"""
    root: Path | None = None
    """dataset root folder"""
    video: str | None = None
    """video id inside the dataset"""
    frame: int | None = None
    """FFN only: clip frame j the image was (default: the first annotated frame)"""
    data: str | None = None
    """a plain image, video file or frame folder instead of a dataset (no labels)"""
    crop: str | None = None
    """HxW centre crop of --data frames before resizing to the model size, e.g. 320x640"""
    layers: str | None = None
    """comma-separated canvas layers (default all: FFN layer1..L, NeRV block1..N,head)"""
    frames: str | None = None
    """NeRV model frame indices, e.g. 4,9,14 or 0-5 (default: the annotated frames of a dataset clip, else all)"""
    mode: Literal["paper", "linear", "both", "faithful", "corrected"] = "both"
    """paper = the paper's canvas + its statistics; linear = the exact linear canvas + the corrected statistics;
    both (faithful/corrected: the old names of paper/linear, deprecated)"""
    seed: int = 0
    """seed of every random choice (neuron sampling, k-means, null partitions, bootstrap)"""
    device: str = "auto"
    """auto, cpu or cuda[:i]"""
    chunk_neurons: int | None = None
    """neurons per canvas chunk (default: planned from --memory-budget-mb)"""
    memory_budget_mb: float | None = None
    """memory budget of one canvas chunk in MB"""
    memo_mb: float = 1024.0
    """canvases kept in memory across analysis passes and analyses, in MB (each canvas computed once; 0: off)"""
    sample_frames: int | Literal["auto", "all"] = "auto"
    """N: analyse a seeded random subset of N of the selected frames (per-frame statistics get standard errors and
    95 % intervals); all: every frame; auto: every frame unless the run is heavy on a CPU (its canvas values exceed
    xinc.analysis.runner.AUTO_VALUES, ~3 CPU-min on a 2-core CPU), then the most frames that fit, said before it
    starts (an explicit --frames and CUDA devices always analyse every frame)"""
    estimate_only: bool = False
    """print the estimated canvas cost of this run and exit without analysing"""
    sample_neurons: int = 6
    """neurons sampled (seeded) for per-neuron plots (A3; same as --option a3.sample_neurons=N)"""
    option: Annotated[tuple[str, ...], REPEATABLE] = ()
    """per-analysis options as AID.NAME=VALUE, e.g. `--option a5.null=8 a2.topk=1024` or `--option a5.null=8
    --option a2.topk=1024` (every occurrence counts; unknown names and mistyped values are an error; see each
    analysis' options dataclass)"""
    progress: bool = True
    """show tqdm progress bars on stderr"""
    overwrite: bool = False
    """replace OUT when it is an earlier xinc output (a folder xinc did not write is never replaced)"""

    def __post_init__(self) -> None:
        """The numbers, checked when the config is made (before any model is loaded)."""
        positive_int(self.sample_neurons, "--sample-neurons")
        optional(positive_int, self.chunk_neurons, "--chunk-neurons")
        optional(finite_positive, self.memory_budget_mb, "--memory-budget-mb")
        optional(non_negative_int, self.frame, "--frame")
        if not isinstance(self.sample_frames, int) or isinstance(self.sample_frames, bool):
            if self.sample_frames not in ("auto", "all"):
                raise XincError(f"--sample-frames {self.sample_frames!r}: not a frame count ; give N >= 1, all or "
                                "auto")
        else:
            positive_int(self.sample_frames, "--sample-frames")
        if not (isinstance(self.memo_mb, int | float) and 0 <= self.memo_mb < float("inf")):
            raise XincError(f"--memo-mb {self.memo_mb}: not a finite size in MB ; give >= 0 (0 turns the canvas memo "
                            "off)")
        for flag, text in (("--layers", self.layers), ("--analyses", self.analyses)):
            if text is not None and not [x for x in text.split(",") if x.strip()]:
                raise XincError(f"{flag} {text!r}: names no item ; give a comma-separated list or leave it out")

    def inputs_read(self) -> list[Path]:
        """The files and folders this run reads (never written or replaced)."""
        if self.model is not None:
            return [Path(p) for p in (self.weights, self.inputs) if p is not None]
        return [Path(p) for p in (self.model_dir, self.root, self.data) if p is not None]

    def check_paths(self) -> None:
        """Exactly one model, the inputs exist and OUT may be written (run by `analyze` before any work)."""
        if (self.model_dir is None) == (self.model is None):
            raise XincError("model: give exactly one of MODEL_DIR (an xinc model directory) or --model "
                            "package.module:factory (a foreign torch.nn.Module)")
        if self.model is not None:
            for path, flag in ((self.weights, "--weights"), (self.inputs, "--inputs")):
                if path is not None:
                    path_in(path, flag, kind="file")
        else:
            path_in(self.model_dir, "MODEL_DIR", kind="dir")
            if self.data is not None:
                path_in(self.data, "--data")
            if self.root is not None:
                path_in(self.root, "--root", kind="dir")
        path_out(self.out, inputs=self.inputs_read(), overwrite=self.overwrite)
