"""`PruneRunConfig` and `run_prune(cfg)`: the settings and entry point of `xinc prune` (tyro parses the config;
the pruning itself is `xinc.prune.prune_models`)."""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from xinc.config import command_line
from xinc.errors import XincError


@dataclass
class PruneRunConfig:
    """Remove neurons (kernel slices / MLP input units with their bias shares) ranked by total |C| over the video's
    frames (contribution), by the L1 norm of their weights (magnitude) or at random, optionally fine-tune, and
    compare with NeRV's global L1 unstructured pruning at equal sparsity. Writes one model directory per run
    under OUT/models/, results.json and results.csv (PSNR and parameter counts), config.json and a PSNR vs
    parameters figure under OUT/figures/.
    """

    model_dir: tyro.conf.Positional[Path]
    """model directory written by `xinc train` or `xinc import`"""
    out: Path
    """output folder"""
    by: str = "contribution,magnitude,random"
    """comma-separated rankings: contribution | magnitude | random"""
    amount: str = "0.1,0.2,0.3,0.4,0.5"
    """comma-separated fractions of each pruned layer's neurons to remove"""
    mode: Literal["paper", "linear"] = "paper"
    """canvas mode of the contribution ranking"""
    layers: str | None = None
    """comma-separated canvas layers to prune (default: all)"""
    frames: str | None = None
    """frames PSNR is measured and fine-tuned on, e.g. 0-29 (default: all)"""
    rank_frames: str | None = None
    """frames the contribution ranking sums over, e.g. 0,6,12,18,24 (default: --frames)"""
    gt: str | None = None
    """ground-truth image / frame folder (default: the data recorded in the model directory; without any, PSNR is
    measured against the unpruned model's own output)"""
    finetune_epochs: int = 0
    """epochs of short fine-tuning of each pruned model (zeros kept); 0 = none"""
    lr: float = 1e-4
    """fine-tuning learning rate (Adam)"""
    unstructured: bool = True
    """also run NeRV's global L1 unstructured pruning removing as many weights"""
    seed: int = 0
    """seed of the random ranking and fine-tuning order"""
    device: str = "auto"
    """auto | cpu | cuda[:i]"""
    overwrite: bool = False
    """replace an OUT written by an earlier xinc prune"""


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise XincError(f"{what} {text!r}: not a comma-separated list of numbers ; e.g. 0.1,0.2,0.3") from None


def _ground_truth(model, model_dir: Path, gt: str | None, frames: list[int]):
    """(images aligned with frames, where they came from): --gt, the recorded data, or the model's own output."""
    from xinc.data.frames import VIDEO_SUFFIXES, load_frames
    from xinc.models.importers.evaluate import numbered_frames
    from xinc.prune import reconstruct
    from xinc.train.common import load_source
    from xinc.utils import read_json

    cfg = read_json(model_dir / "config.json")
    data = (cfg.get("train") or cfg.get("import") or {}).get("data") or {}
    size = (model.config.height, model.config.width)
    crop = tuple(data["crop"]) if data.get("crop") else None
    src = gt or (data.get("src") if data.get("kind") in ("image", "video") else None)
    if src:
        if data.get("frame_files") and Path(src).is_dir():
            return numbered_frames(src, frames, crop, size), str(src)
        many = Path(src).is_dir() or Path(src).suffix.lower() in VIDEO_SUFFIXES
        return load_frames(src, crop, size, frames if many else None), str(src)
    if data.get("kind") == "dataset":
        return load_source(data)[frames], f"{data.get('dataset')}:{data.get('video')}"
    own = "reconstruction (no ground truth recorded: PSNR vs the unpruned output)"
    return reconstruct(model, frames).clamp(0, 1), own


def run_prune(o: PruneRunConfig, *, command: str | None = None, verbose: bool = True):
    """Prune the model `o` names and write o.out (models/, results.json/csv, figures/, config.json); returns the
    `xinc.prune.PruneResult` and where the ground truth came from. Every refusal comes before any work."""
    from xinc.canvas import num_frames
    from xinc.models.io import load_model
    from xinc.outputs import check_output_dir
    from xinc.prune import PruneConfig, prune_models, save_prune
    from xinc.utils import parse_index_list, resolve_device

    check_output_dir(o.out, inputs=(o.model_dir,), overwrite=o.overwrite)  # refused now, not after the work
    device = resolve_device(o.device)
    model = load_model(o.model_dir, device)
    cfg = PruneConfig(by=[b.strip() for b in o.by.split(",") if b.strip()], amounts=_floats(o.amount, "--amount"),
                      mode=o.mode, layers=[s.strip() for s in o.layers.split(",")] if o.layers else None,
                      finetune_epochs=o.finetune_epochs, lr=o.lr, seed=o.seed, unstructured=o.unstructured)
    cfg.validate(model)
    frames = parse_index_list(o.frames, num_frames(model), "--frames")
    cfg.frames = parse_index_list(o.rank_frames, num_frames(model), "--rank-frames") if o.rank_frames else frames
    images, source = _ground_truth(model, o.model_dir, o.gt, frames)
    if images.shape[0] != len(frames):
        raise XincError(f"--gt: holds {images.shape[0]} frame(s) for {len(frames)} model frames ; "
                        "pass --frames to match")
    res = prune_models(model, images.to(device), frames, cfg,
                       progress=(lambda s: print(f"pruning: {s}", file=sys.stderr)) if verbose else None)
    command = command or command_line("xinc prune", o, positional=("model_dir",))
    save_prune(res, o.out, cfg, model_dir=o.model_dir, ground_truth=source, argv=shlex.split(command),
               overwrite=o.overwrite)
    return res, source
