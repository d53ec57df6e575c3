"""The one training loop: seeding, resume, periodic evaluation, best weights, checkpoints, progress, metrics.

A model family (FFN, NeRV, ...) describes one run as a `Job` (output folder, config.json content,
length and cadence) and a `Task` (model, optimizer, `train_unit(u, log)` that runs unit u of
training, `evaluate(model)` that scores a model). `run(job, task)` does the rest the same way for
every family: the owned, locked output folder, resume from the last checkpoint, evaluation every
`eval_every` units, best-weight tracking, atomic checkpoints, the tqdm bar, metrics.json and the
final best weights. See docs/reference/training.md ("The training loop").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xinc import __version__
from xinc.models.io import build_model, load_model, save_model
from xinc.outputs import owned_output
from xinc.train.common import (
    Checkpoint,
    Clock,
    TrainResult,
    finish_stage,
    finished_run,
    note,
    prepare_stage,
    progress_bar,
    save_checkpoint,
    save_metrics,
)
from xinc.train.metrics import bits_per_pixel
from xinc.train.quant import num_params, quantize_model
from xinc.utils import seed_everything, to_jsonable

RNG_KEY = "shuffle_rng"  # name of the task generator's state in a checkpoint's state.pt
QUANT_SCHEME = "per-row affine min/scale, 8-bit codes; row min and scale as float32 counted"
Callback = Callable[[int, dict[str, Any]], None]


@dataclass
class Job:
    """Where a run writes and how it is paced: output folder, config.json content, length, cadence, flags."""

    out: Path
    run_config: dict[str, Any]  # {"xinc_version", "model", "train"}: config.json, compared on resume
    units: int  # training length in the task's units (FFN: steps, NeRV: epochs)
    eval_every: int  # evaluate, keep the best weights and checkpoint every N units (and after the last)
    log_every: int  # refresh the progress bar every N optimizer steps (one host sync each)
    device: torch.device
    inputs: list[Any] = field(default_factory=list)  # files the run reads (never replaced, never inside OUT)
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    desc: str = "train"


@dataclass
class Task:
    """What a model family plugs into the loop (everything else is shared)."""

    kind: str  # metrics.json "kind"
    model: nn.Module
    optimizer: torch.optim.Optimizer
    train_unit: Callable[[int, Log], None]  # run unit u (0-based); report each optimizer step to `log`
    evaluate: Callable[[nn.Module], dict[str, Any]]  # {"psnr", alt, "loss", ...} of a model on the data
    num_pixels: int  # pixels of all frames (bits per pixel)
    psnr_definition: str
    unit: str = "step"  # "step" | "epoch": key of eval records and of best_<unit>
    alt: str = "psnr_float"  # the second PSNR convention kept in eval records (best_<alt>, final_<alt>)
    iters_per_unit: int = 1  # optimizer steps per unit (progress bar total, steps/s)
    rng: torch.Generator | None = None  # a generator the task draws from (saved in checkpoints)
    extra_metrics: Callable[[dict[str, Any], Clock], dict[str, Any]] | None = None  # family keys from the best eval


class Log:
    """Progress-bar updates from inside a unit: one host sync every `every` optimizer steps and at the end."""

    def __init__(self, bar, every: int, total: int):
        self.bar, self.every, self.total = bar, every, total

    def __call__(self, it: int, loss: torch.Tensor, lr: float | None = None) -> None:
        if it % self.every == 0 or it == self.total:
            self.bar.update(it - self.bar.n)
            text = f"psnr {float(-10 * torch.log10(loss.detach())):.2f} dB"
            self.bar.set_postfix_str(text if lr is None else f"{text} lr {lr:.2e}", refresh=False)


@dataclass
class State:
    """The loop's state, carried across checkpoints."""

    unit: int
    evals: list[dict[str, Any]]
    best_psnr: float
    best_unit: int
    best_state: dict[str, torch.Tensor]
    initial: dict[str, Any]
    clock: Clock
    resumed: bool


def seeded_model(model_cfg: Any, seed: int, device: torch.device) -> nn.Module:
    """Seed python/numpy/torch from `seed` and build the model from its config with the seed's generator."""
    return build_model(model_cfg, seed_everything(seed)).to(device)


def make_job(cfg: Any, model_cfg: Any, *, device: torch.device, data: dict[str, Any], units: int, desc: str,
             inputs: list[Any], **train_extra: Any) -> Job:
    """A Job from a family config (fields out, eval_every, log_every, resume, overwrite, progress)."""
    out = Path(cfg.out)
    train = to_jsonable({**to_jsonable(cfg), "out": str(out), "device": str(device), "data": data, **train_extra})
    run_config = {"xinc_version": __version__, "model": to_jsonable(model_cfg), "train": train}
    return Job(out=out, run_config=run_config, units=units, eval_every=cfg.eval_every, log_every=cfg.log_every,
               device=device, inputs=inputs, resume=cfg.resume, overwrite=cfg.overwrite, progress=cfg.progress,
               desc=desc)


def run(job: Job, task: Task, callback: Callback | None = None) -> TrainResult:
    """Train `task` as `job` says; write OUT/ (best weights, config.json, metrics.json) and return it.

    `callback(unit, eval_record)` runs after every evaluation and checkpoint (raising there interrupts
    the run, which `resume=True` continues). `--resume` on a finished run with the same options returns it.
    """
    if job.resume and (done := finished_run(job.out, job.run_config)) is not None:
        note(f"{job.out}: this run already finished; nothing to resume")
        return TrainResult(out_dir=job.out, metrics=done, model=load_model(job.out, job.device))
    with owned_output(job.out, inputs=job.inputs, overwrite=job.overwrite, resume=True, kind="train") as stage:
        try:
            metrics = fit(stage, job, task, callback)
        except KeyboardInterrupt:
            note(f"interrupted; the run is kept in {stage}; rerun the same command with --resume to continue")
            raise
    return TrainResult(out_dir=job.out, metrics=metrics, model=task.model)


def fit(stage: Path, job: Job, task: Task, callback: Callback | None = None) -> dict[str, Any]:
    """The loop proper, inside the staging folder: train, evaluate + checkpoint, then write the results."""
    state = _start(task, prepare_stage(stage, job.run_config, job.resume))
    total = job.units * task.iters_per_unit
    bar = progress_bar(total, state.unit * task.iters_per_unit, job.progress, job.desc)
    log = Log(bar, job.log_every, total)
    state.clock.start_training()
    while state.unit < job.units:
        task.train_unit(state.unit, log)
        state.unit += 1
        if state.unit % job.eval_every == 0 or state.unit == job.units:
            state.clock.stop_training()
            rec = _evaluate_and_checkpoint(stage, task, state)
            if callback is not None:
                callback(state.unit, rec)
            state.clock.start_training()
    state.clock.stop_training()
    bar.close()
    task.model.load_state_dict(state.best_state)
    metrics = summary(job, task, state)
    save_model(task.model, stage, extra={"train": job.run_config["train"]})
    save_metrics(stage, metrics)
    finish_stage(stage)
    return metrics


def _record(task: Task, ev: dict[str, Any]) -> dict[str, Any]:
    """The scalars of an evaluation kept in metrics.json's evals."""
    return {"psnr": ev["psnr"], task.alt: ev[task.alt], "loss": ev["loss"]}


def _cpu_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _start(task: Task, ckpt: Checkpoint | None) -> State:
    """Fresh state (with the initial evaluation) or the state of the last checkpoint."""
    if ckpt is None:
        return State(unit=0, evals=[], best_psnr=float("-inf"), best_unit=0, best_state=_cpu_copy(task.model),
                     initial=_record(task, task.evaluate(task.model)), clock=Clock(), resumed=False)
    task.model.load_state_dict(ckpt.weights)
    task.optimizer.load_state_dict(ckpt.state["optimizer"])
    if task.rng is not None:
        task.rng.set_state(ckpt.state[RNG_KEY])
    p = ckpt.progress
    return State(unit=p["step"], evals=p["evals"], best_psnr=p["best_psnr"], best_unit=p[f"best_{task.unit}"],
                 best_state=ckpt.best, initial=p["initial"], clock=Clock(p["wall_time_s"], p["train_time_s"]),
                 resumed=True)


def _evaluate_and_checkpoint(stage: Path, task: Task, state: State) -> dict[str, Any]:
    """Evaluate, keep the best weights, and write a resumable checkpoint of unit `state.unit`."""
    rec = {task.unit: state.unit, **_record(task, task.evaluate(task.model))}
    state.evals.append(rec)
    if rec["psnr"] > state.best_psnr:
        state.best_psnr, state.best_unit = rec["psnr"], state.unit
        state.best_state = _cpu_copy(task.model)
    progress = {"evals": state.evals, "best_psnr": state.best_psnr, f"best_{task.unit}": state.best_unit,
                "initial": state.initial, "wall_time_s": state.clock.wall, "train_time_s": state.clock.train}
    extra = {RNG_KEY: task.rng.get_state()} if task.rng is not None else None
    save_checkpoint(stage, state.unit, task.model, state.best_state, task.optimizer, progress, extra_tensors=extra)
    return rec


def summary(job: Job, task: Task, state: State) -> dict[str, Any]:
    """metrics.json of a finished run; the model holds the best weights."""
    model, alt, final = task.model, task.alt, state.evals[-1]
    best = task.evaluate(model)
    qmodel, qbits = quantize_model(model)
    quant = task.evaluate(qmodel)
    n = num_params(model)
    steps = job.units * task.iters_per_unit
    clock = state.clock
    return {
        "kind": task.kind,
        "psnr_definition": task.psnr_definition,
        "evals": state.evals,
        "psnr": [e["psnr"] for e in state.evals],
        "initial_psnr": state.initial["psnr"],
        "best_psnr": best["psnr"],
        f"best_{alt}": best[alt],
        f"best_{task.unit}": state.best_unit,
        **(task.extra_metrics(best, clock) if task.extra_metrics is not None else {}),
        "final_psnr": final["psnr"],
        f"final_{alt}": final[alt],
        "num_params": n,
        "num_pixels": task.num_pixels,
        "bpp_32bit": bits_per_pixel(32 * n, task.num_pixels),
        "bpp_8bit": bits_per_pixel(qbits, task.num_pixels),
        "quant_8bit": {"psnr": quant["psnr"], alt: quant[alt], "bits": qbits, "scheme": QUANT_SCHEME},
        "psnr_8bit_weights": quant["psnr"],
        "steps": steps,
        "wall_time_s": clock.wall,
        "train_time_s": clock.train,
        "steps_per_s": steps / clock.train if clock.train > 0 else None,
        "resumed": state.resumed,
        "device": str(next(model.parameters()).device),
    }
