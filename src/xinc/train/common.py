"""Shared training machinery: output check, data sources, lr schedule, resumable checkpoints, evaluation."""

from __future__ import annotations

import math
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from xinc.errors import XincError
from xinc.models.protocol import is_canvas_model, takes_frames
from xinc.train.metrics import psnr_8bit, psnr_float
from xinc.utils import read_json, write_json

CHECKPOINT = "checkpoint.json"
METRICS = "metrics.json"
# keys of the train section that may differ between an interrupted run and its resumption
VOLATILE_KEYS = ("resume", "progress", "command", "log_every", "device", "overwrite")


@dataclass
class TrainResult:
    """What a training call returns: the finished output folder and its metrics.json content."""

    out_dir: Path
    metrics: dict[str, Any]
    model: nn.Module = field(repr=False, default=None)


# ---------------------------------------------------------------- option checks


def check_out(out: str | Path | None) -> Path:
    """The output folder must be named and must not be an existing file."""
    if not out:
        raise XincError("--out: an output folder is required ; give --out PATH")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise XincError(f"--out {out}: exists and is a file ; choose another path")
    return out


# ---------------------------------------------------------------- data


def load_source(data: dict[str, Any]) -> torch.Tensor:
    """Load the frames a train section's `data` record describes, as (T, 3, H, W) float32.

    kinds: "image" / "video" (a file or frame folder via xinc.data.frames) and "dataset" (a panoptic clip).
    """
    from xinc.data.frames import load_frames

    kind = data.get("kind")
    crop = tuple(data["crop"]) if data.get("crop") else None
    size = tuple(data["size"]) if data.get("size") else None
    if kind in ("image", "video"):
        return load_frames(data["src"], crop, size, data.get("frames"))
    if kind == "dataset":
        try:
            from xinc.data.panoptic import load_panoptic_clip
        except ImportError:
            raise XincError(
                "--dataset: this installation has no panoptic dataset loader (xinc.data.panoptic); "
                "train from a frame folder with --video instead"
            ) from None
        clip = load_panoptic_clip(data["dataset"], data["root"], data["video"], size=size, crop=crop)
        frames = clip.frames
        n = data.get("frames")
        return frames[:n] if n else frames
    raise XincError(f"data source kind {kind!r} is unknown; the model directory cannot name its ground truth")


# ---------------------------------------------------------------- lr schedule


def warmup_cosine_mult(progress: float, warmup: float = 0.1, start: float = 0.1) -> float:
    """NeRV's lr multiplier at training progress e in [0, 1): linear start->1 over `warmup`, then cosine to 0.

    This is HNeRV/XINC `adjust_lr` with lr_type cosine_<start>_1_<warmup>: e < warmup gives
    start + (1 - start) * e / warmup, otherwise 0.5 * (1 + cos(pi * (e - warmup) / (1 - warmup))).
    """
    if progress < warmup:
        return start + (1.0 - start) * progress / warmup
    return 0.5 * (1.0 + math.cos(math.pi * (progress - warmup) / (1.0 - warmup)))


def nerv_lr(peak: float, epoch: int, step: int, steps_per_epoch: int, epochs: int, warmup: float = 0.1,
            start: float = 0.1) -> float:
    """lr of iteration `step` (0-based, within `epoch`): e = (epoch + step/steps_per_epoch) / epochs."""
    e = (epoch + step / steps_per_epoch) / epochs
    return peak * warmup_cosine_mult(e, warmup, start)


# ---------------------------------------------------------------- evaluation


@torch.no_grad()
def predict(model: nn.Module, indices: Sequence[int] | None = None, batch: int = 8) -> torch.Tensor:
    """Model output for frames `indices` as (T, 3, H, W) float32 on the model's device (FFN: one frame)."""
    if not is_canvas_model(model):
        raise TypeError(f"cannot predict frames with a {type(model).__name__}")
    if not takes_frames(model):
        return model.render()[None]
    idx = list(range(model.config.num_frames)) if indices is None else list(indices)
    outs = [model(idx[i : i + batch]) for i in range(0, len(idx), batch)]
    return torch.cat(outs)


def frame_psnrs(pred: torch.Tensor, target: torch.Tensor) -> dict[str, list[float]]:
    """Per-frame PSNR in both conventions: float (raw output) and 8-bit (clamped, rounded)."""
    return {"psnr_float": psnr_float(pred, target).tolist(), "psnr_8bit": psnr_8bit(pred, target).tolist()}


# ---------------------------------------------------------------- resumable checkpoints


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in module.state_dict().items()}


def save_checkpoint(
    stage: Path,
    step: int,
    model: nn.Module,
    best_state: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    progress: dict[str, Any],
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write ckpt-<step>/ (weights, best weights, optimizer + RNG state), then point checkpoint.json at it.

    The pointer is written last and atomically, so a crash at any moment leaves the previous
    complete checkpoint in force. Older ckpt-* folders are removed afterwards.
    """
    name = f"ckpt-{step:09d}"
    folder = stage / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    save_file(_cpu_state(model), str(folder / "weights.safetensors"))
    save_file(best_state, str(folder / "best.safetensors"))
    state = {"optimizer": optimizer.state_dict(), **(extra_tensors or {})}
    torch.save(state, folder / "state.pt")
    write_json(stage / CHECKPOINT, {"folder": name, "step": step, **progress})
    for old in stage.glob("ckpt-*"):
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)


@dataclass
class Checkpoint:
    """A loaded checkpoint: progress record, current and best weights, optimizer/RNG state."""

    progress: dict[str, Any]
    weights: dict[str, torch.Tensor]
    best: dict[str, torch.Tensor]
    state: dict[str, Any]


def load_checkpoint(stage: Path) -> Checkpoint | None:
    """The checkpoint of an interrupted run in `stage`, or None when there is none yet."""
    pointer = stage / CHECKPOINT
    if not pointer.is_file():
        return None
    progress = read_json(pointer)
    folder = stage / str(progress.get("folder", ""))
    try:
        weights = load_file(str(folder / "weights.safetensors"))
        best = load_file(str(folder / "best.safetensors"))
        state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or missing files: the run cannot be continued
        raise XincError(f"{folder}: checkpoint is unreadable ({e}); rerun without --resume to start over") from None
    return Checkpoint(progress=progress, weights=weights, best=best, state=state)


def comparable(train: dict[str, Any]) -> dict[str, Any]:
    """The part of a train section that must match for a run to be resumed."""
    return {k: v for k, v in train.items() if k not in VOLATILE_KEYS}


def prepare_stage(stage: Path, config: dict[str, Any], resume: bool) -> Checkpoint | None:
    """Fresh run: empty the staging folder and write config.json. Resume: check config, return checkpoint."""
    if resume and (stage / "config.json").is_file():
        old = read_json(stage / "config.json")
        if old.get("model") != config["model"] or comparable(old.get("train", {})) != comparable(config["train"]):
            raise XincError(
                f"{stage}: the interrupted run used different options; rerun with the same options, "
                "or without --resume to start over"
            )
        ckpt = load_checkpoint(stage)
        if ckpt is not None:
            return ckpt
        note("no checkpoint in the interrupted run yet; starting from step 0")
    elif resume:
        note(f"{stage}: nothing to resume; starting a fresh run")
    elif (stage / CHECKPOINT).is_file():
        note(f"{stage}: discarding an interrupted run (pass --resume to continue it instead)")
    from xinc.outputs import MARKER

    for child in list(stage.iterdir()):  # the stage is ours and locked (xinc.outputs.owned_output)
        if child.name != MARKER:
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    write_json(stage / "config.json", config)
    return None


def finished_run(out: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """Metrics of an already finished run in `out` with these options (for --resume after completion), else None."""
    from xinc.utils import partial_dir

    if partial_dir(out).exists() or not (out / METRICS).is_file() or not (out / "config.json").is_file():
        return None
    old = read_json(out / "config.json")
    if old.get("model") != config["model"] or comparable(old.get("train", {})) != comparable(config["train"]):
        return None
    return read_json(out / METRICS)


def finish_stage(stage: Path) -> None:
    """Remove resume-only files once the final weights and metrics are written."""
    for old in stage.glob("ckpt-*"):
        shutil.rmtree(old, ignore_errors=True)
    (stage / CHECKPOINT).unlink(missing_ok=True)


def note(message: str) -> None:
    """One informational line on stderr."""
    print(f"xinc: {message}", file=sys.stderr)


def save_metrics(stage: Path, metrics: dict[str, Any]) -> None:
    write_json(stage / METRICS, metrics)


class Clock:
    """Wall time and training-only time (evaluation and checkpoints excluded), carried across resumes."""

    def __init__(self, wall: float = 0.0, train: float = 0.0):
        self.wall0, self.train0 = wall, train
        self.t_start = time.perf_counter()
        self.train_acc = 0.0
        self._seg: float | None = None

    def start_training(self) -> None:
        self._seg = time.perf_counter()

    def stop_training(self) -> None:
        if self._seg is not None:
            self.train_acc += time.perf_counter() - self._seg
            self._seg = None

    @property
    def wall(self) -> float:
        return self.wall0 + time.perf_counter() - self.t_start

    @property
    def train(self) -> float:
        return self.train0 + self.train_acc


def progress_bar(total: int, initial: int, enabled: bool, desc: str):
    """A tqdm bar on stderr (a no-op bar when disabled)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc=desc, unit="step", dynamic_ncols=True,
                leave=True, file=sys.stderr)
