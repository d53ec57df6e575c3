"""Fit the paper's FFN (Fourier features + MLP) to one image: full image per step, Adam, constant lr.

Only what is FFN-specific lives here (config, data, model, loss step, evaluation); the loop
(resume, evaluation cadence, best weights, checkpoints, metrics) is `xinc.train.loop`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
import torch.nn.functional as F
import tyro

from xinc.errors import XincError
from xinc.fields import HW, OptionalHW
from xinc.models.ffn import ACTIVATIONS, FFN, FFNConfig
from xinc.train.common import TrainResult, check_out, load_source
from xinc.train.loop import Log, Task, make_job, run, seeded_model
from xinc.train.metrics import psnr_8bit, psnr_float
from xinc.utils import resolve_device
from xinc.validate import alloc, choice, finite_positive, hw, optional, path_out, positive_int


@dataclass
class TrainFFNConfig:
    """Train the paper's FFN (Gaussian Fourier features + ReLU MLP) on one image.

    Defaults are the paper's: sigma 10, width 104, 3 layers, Adam 9e-4, 1000 full-image steps at
    128x256. Writes OUT/model.safetensors (best weights), OUT/config.json, OUT/metrics.json; the run
    lives in OUT.partial until it finishes (resume an interrupted run with --resume).
    Example: xinc train ffn --image frame.png --out runs/ffn
    """

    image: Annotated[str | None, tyro.conf.arg(metavar="PATH", help_behavior_hint="(required)")] = None
    """Image file to learn (PNG, JPEG, ...); from Python, or pass `target=` to train_ffn."""
    out: Annotated[str | None, tyro.conf.arg(metavar="PATH", help_behavior_hint="(required)")] = None
    """Output folder (staged in OUT.partial, renamed to OUT when the run finishes)."""
    size: HW = (128, 256)
    """HxW the image is resized to (bicubic)."""
    crop: OptionalHW = None
    """Centre crop HxW applied before resizing."""
    hidden: Annotated[int, tyro.conf.arg(name="width")] = 104
    """Units per hidden layer (also the number of Fourier features unless --num-features)."""
    layers: Annotated[int, tyro.conf.arg(name="depth")] = 3
    """Number of linear layers."""
    encoding: str = "fourier"
    """Input encoding: fourier | none (raw coordinates, usual for SIREN)."""
    sigma: float = 10.0
    """Standard deviation of the Gaussian Fourier matrix B."""
    num_features: int | None = None
    """Number of Fourier features L (default: = --width)."""
    activation: str = "relu"
    """Hidden activation: relu | sine (SIREN) | gelu | tanh."""
    w0: float = 30.0
    """SIREN frequency of hidden layers (activation sine)."""
    w0_initial: float = 30.0
    """SIREN frequency of the first layer (activation sine)."""
    steps: int = 1000
    """Adam steps (each on the full image)."""
    lr: float = 9e-4
    """Constant learning rate."""
    seed: int = 0
    """Seed of B, the initial weights and everything else."""
    device: str = "auto"
    """auto | cpu | cuda[:i]."""
    eval_every: int = 100
    """Evaluate PSNR, keep the best weights and checkpoint every N steps."""
    log_every: int = 10
    """Refresh the progress bar's running PSNR every N steps (one host sync each)."""
    resume: bool = False
    """Continue an interrupted run from OUT.partial (same options)."""
    overwrite: bool = False
    """Replace OUT when it is an earlier xinc output (a folder xinc did not write is never replaced)."""
    progress: bool = True
    """Show a progress bar on stderr (--no-progress to hide)."""


def validate_ffn_config(cfg: TrainFFNConfig) -> None:
    """Reject out-of-range options with one clear line (before anything is written); normalises size/crop."""
    check_out(cfg.out)
    path_out(cfg.out, inputs=[cfg.image], overwrite=cfg.overwrite or cfg.resume)
    for flag, v in (("--steps", cfg.steps), ("--eval-every", cfg.eval_every), ("--log-every", cfg.log_every),
                    ("--width", cfg.hidden), ("--depth", cfg.layers)):
        positive_int(v, flag)
    optional(positive_int, cfg.num_features, "--num-features")
    for flag, v in (("--lr", cfg.lr), ("--sigma", cfg.sigma), ("--w0", cfg.w0), ("--w0-initial", cfg.w0_initial)):
        finite_positive(v, flag)
    choice(cfg.activation, "--activation", ACTIVATIONS)
    choice(cfg.encoding, "--encoding", ("fourier", "none"))
    cfg.size = hw(cfg.size, "--size", allow_none=False)
    cfg.crop = hw(cfg.crop, "--crop")
    feats = cfg.num_features or cfg.hidden  # full-image steps: features + every layer's activations, x3 (grad, Adam)
    alloc(12.0 * cfg.size[0] * cfg.size[1] * (2 * feats + cfg.hidden * cfg.layers), f"--size {cfg.size[0]}x"
          f"{cfg.size[1]} with --width {cfg.hidden}", "choose a smaller --size or --width")


def ffn_data_record(cfg: TrainFFNConfig, from_tensor: bool) -> dict[str, Any]:
    """The data source as recorded in config.json (enough for `xinc reconstruct` to find the ground truth)."""
    if from_tensor:
        return {"kind": "tensor", "src": None, "crop": cfg.crop, "size": list(cfg.size), "frames": 1}
    return {"kind": "image", "src": str(Path(cfg.image).resolve()), "crop": cfg.crop, "size": list(cfg.size),
            "frames": 1}


def load_ffn_target(data: dict[str, Any]) -> torch.Tensor:
    """The training image as (3, H, W) in [0, 1] (clamped: bicubic resizing can overshoot slightly)."""
    frames = load_source(data)
    if frames.shape[0] != 1:
        raise XincError(f"{data['src']}: an FFN learns one image but the source holds {frames.shape[0]} frames")
    return frames[0].clamp(0.0, 1.0)


def mlp(model: FFN, h: torch.Tensor) -> torch.Tensor:
    """The FFN's linear layers and activations applied to already-encoded inputs (P, n)."""
    for i, layer in enumerate(model.layers):
        h = model.activation(i, layer(h))
    return h


def _eval(model: FFN, feats: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        out = mlp(model, feats)
        pred = out.t().reshape(target.shape)
        mse = float(F.mse_loss(pred, target))
        return {"psnr": float(psnr_8bit(pred, target)[0]), "psnr_float": float(psnr_float(pred, target)[0]),
                "loss": mse}


def ffn_task(model: FFN, target: torch.Tensor, cfg: TrainFFNConfig) -> Task:
    """The FFN's part of the loop: one full-image MSE step of Adam per unit, 8-bit PSNR evaluation."""
    feats = model.encode(model.coords(target.device)).detach().contiguous()  # B is fixed: encode the grid once
    y = target.reshape(3, -1).t().contiguous()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)

    def train_unit(u: int, log: Log) -> None:
        opt.zero_grad(set_to_none=True)
        loss = F.mse_loss(mlp(model, feats), y)
        loss.backward()
        opt.step()
        log(u + 1, loss)

    return Task(kind="ffn", model=model, optimizer=opt, train_unit=train_unit,
                evaluate=lambda m: _eval(m, feats, target), num_pixels=target.shape[1] * target.shape[2],
                psnr_definition="psnr: 10*log10(1/MSE) after clamping to [0,1] and 8-bit rounding (SPEC 1.1); "
                "psnr_float: same on the raw output", unit="step", alt="psnr_float")


def _target(target: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A (3, H, W) (or (1, 3, H, W)) tensor given from Python, checked against --size."""
    img = target.detach().to(torch.float32)
    if img.dim() == 4 and img.shape[0] == 1:
        img = img[0]
    if img.dim() != 3 or img.shape[0] != 3 or tuple(img.shape[1:]) != tuple(size):
        raise XincError(f"target: expected a (3, {size[0]}, {size[1]}) tensor, got {tuple(img.shape)}")
    return img


def train_ffn(
    config: TrainFFNConfig,
    *,
    target: torch.Tensor | None = None,
    command: str | None = None,
    callback: Callable[[int, dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Fit an FFN to `config.image` (or the (3, H, W) `target`); write <out>/ and return it with its metrics.

    `callback(step, eval_record)` runs after every evaluation and checkpoint (raising there
    interrupts the run; it can then be resumed with `resume=True`).
    """
    cfg = config
    validate_ffn_config(cfg)
    if target is None and not cfg.image:
        raise XincError("--image: an image file is required ; give --image PATH")
    data = ffn_data_record(cfg, target is not None)
    img = load_ffn_target(data) if target is None else _target(target, cfg.size)
    device = resolve_device(cfg.device)
    H, W = cfg.size
    model_cfg = FFNConfig(height=H, width=W, hidden=cfg.hidden, layers=cfg.layers, encoding=cfg.encoding,
                          sigma=cfg.sigma, num_features=cfg.num_features, activation=cfg.activation, w0=cfg.w0,
                          w0_initial=cfg.w0_initial)
    model = seeded_model(model_cfg, cfg.seed, device)
    job = make_job(cfg, model_cfg, device=device, data=data, units=cfg.steps, desc="train ffn", inputs=[cfg.image],
                   command=command, optimizer="Adam(betas=(0.9, 0.999), eps=1e-8)", loss="MSE")
    return run(job, ffn_task(model, img.to(device), cfg), callback)
