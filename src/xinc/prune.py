"""Structured pruning guided by contributions, against weight magnitude, random choice and NeRV's L1 pruning.

A neuron is what the canvas rules call one (the (c_in, c_out) kernel slice of a conv layer, one input unit of a
linear layer); removing it zeroes its weight slice and takes its bias share (b / n_in) out. Per pruned layer the
`amount` fraction of neurons with the lowest score goes: total |C| over the ranked frames (`contribution`, the
canvas of `mode`), the L1 norm of the slice (`magnitude`) or a seeded random score (`random`). Each pruned model
is optionally fine-tuned a few epochs with its zeros kept (torch.nn.utils.prune masks). For comparison, NeRV's
global L1 unstructured pruning (torch.nn.utils.prune.global_unstructured) removes as many weights of the same
layers as the structured run did.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.utils.prune as tprune

from xinc.canvas.ablation import layer_module, masked_params, num_neurons, removal_keep, weight_l1
from xinc.errors import XincError

RANKINGS = ("contribution", "magnitude", "random")


@dataclass
class PruneConfig:
    """What `prune_models` does (the CLI parses these)."""

    by: list[str] = field(default_factory=lambda: list(RANKINGS))  # rankings to run
    amounts: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5])  # fraction of neurons removed
    mode: str = "paper"  # canvas mode of the contribution ranking
    layers: list[str] | None = None  # canvas layers to prune (default: all)
    frames: list[int] | None = None  # frames the contribution ranking sums over (default: all)
    finetune_epochs: int = 0  # short fine-tuning of each pruned model (0: none)
    lr: float = 1e-4  # fine-tuning learning rate (Adam)
    seed: int = 0
    unstructured: bool = True  # also NeRV's global L1 unstructured pruning at equal sparsity

    def validate(self, model) -> None:
        """One-line errors before any work: rankings, amounts in (0, 1), layers and frames of this model."""
        bad = [b for b in self.by if b not in RANKINGS]
        if bad or not self.by:
            raise XincError(f"--by {','.join(self.by)}: unknown ranking ; choose from {', '.join(RANKINGS)}")
        if not self.amounts or any(not 0 < a < 1 for a in self.amounts):
            raise XincError(f"--amount {self.amounts}: fractions must lie strictly between 0 and 1 ; e.g. 0.1,0.3")
        if self.mode not in ("paper", "linear"):
            raise XincError(f"--mode {self.mode!r}: choose paper or linear")
        names = list(model.layer_names)
        for la in self.layers or []:
            if la not in names:
                raise XincError(f"--layers: {la!r} is not a canvas layer of this model ; "
                                f"choose from {', '.join(names)}")
        if self.finetune_epochs < 0 or self.lr <= 0:
            raise XincError("--finetune-epochs must be >= 0 and --lr positive")


@dataclass
class PruneResult:
    """Numbers of every run and the pruned models ({name: module}); `rows` are JSON/CSV-ready."""

    baseline: dict[str, Any]
    rows: list[dict[str, Any]]
    models: dict[str, torch.nn.Module]
    scores_seconds: dict[str, float]


def count_params(model) -> dict[str, int]:
    """All parameters and the nonzero ones (pruned slices are exact zeros)."""
    ps = list(model.parameters())
    return {"params": int(sum(p.numel() for p in ps)), "nonzero": int(sum(int((p != 0).sum()) for p in ps))}


def reconstruct(model, frames: list[int]) -> torch.Tensor:
    """The model's output images (T, 3, H, W) for model frames (the FFN: its one image)."""
    with torch.no_grad():
        if hasattr(model, "blocks"):
            return torch.cat([model(frames[a:a + 4]) for a in range(0, len(frames), 4)]).cpu()
        return model.render()[None].cpu()


def psnr(model, images: torch.Tensor, frames: list[int]) -> dict[str, float]:
    """Mean per-frame PSNR (dB) of the model's output against images: clamped to [0, 1] with the MSE floored at
    8-bit quantisation noise (finite against the model's own output), and 8-bit rounded."""
    from xinc.analysis.faithfulness import capped_psnr
    from xinc.train.metrics import psnr_8bit

    pred = reconstruct(model, frames)
    p = torch.stack([capped_psnr(pred[j:j + 1], images[j].cpu())[0] for j in range(len(pred))])
    return {"psnr": float(p.mean()), "psnr_8bit": float(psnr_8bit(pred, images.cpu()).mean())}


def neuron_scores(model, layer: str, by: str, mode: str, frames: list[int] | None, gen: torch.Generator,
                  progress: Callable[[int], Any] | None = None) -> torch.Tensor:
    """Importance per neuron (K,): total |C| over frames, the slice's weight L1, or a seeded random number."""
    if by == "magnitude":
        return weight_l1(model, layer).double()
    if by == "random":
        return torch.rand(num_neurons(model, layer), generator=gen).double()
    from xinc.canvas import NeuronTotals, stream_canvas

    tot = NeuronTotals()
    stream_canvas(model, layer, frames if hasattr(model, "blocks") else [0], tot, mode=mode, progress=progress)
    return sum(v.double() for v in tot.result().values()).reshape(-1)


def structured(model, removed: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A copy of the model with each layer's removed neurons (bool (K,)) zeroed, bias shares taken out."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for layer, rem in removed.items():
            w, b = masked_params(model, layer, removal_keep(model, layer, rem))
            mod = layer_module(out, layer)
            mod.weight.copy_(w)
            mod.bias.copy_(b)
    return out


def lowest(scores: torch.Tensor, amount: float) -> torch.Tensor:
    """bool (K,): the round(amount K) lowest-scored neurons (ties broken by index)."""
    K = scores.numel()
    rem = torch.zeros(K, dtype=torch.bool)
    rem[torch.argsort(scores, stable=True)[: int(round(amount * K))]] = True
    return rem


def unstructured_l1(model, layers: list[str], n_weights: int) -> torch.nn.Module:
    """A copy with NeRV's global L1 unstructured pruning of `n_weights` weights over the layers' weights."""
    out = copy.deepcopy(model)
    mods = [(layer_module(out, la), "weight") for la in layers]
    if n_weights > 0:
        tprune.global_unstructured(mods, pruning_method=tprune.L1Unstructured, amount=int(n_weights))
        for mod, name in mods:
            tprune.remove(mod, name)
    return out


def finetune(model, images: torch.Tensor, frames: list[int], layers: list[str], epochs: int, lr: float,
             seed: int) -> torch.nn.Module:
    """Short fine-tuning (Adam, L2 on the output) with the zero weights of `layers` kept at zero."""
    if epochs <= 0:
        return model
    mods = [layer_module(model, la) for la in layers]
    for mod in mods:
        tprune.custom_from_mask(mod, "weight", (mod.weight != 0).to(mod.weight.dtype))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    dev = next(model.parameters()).device
    target = images.to(dev)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(frames), generator=gen).tolist() if hasattr(model, "blocks") else [0]
        for a in range(0, len(order), 2):
            idx = order[a:a + 2]
            pred = model([frames[j] for j in idx]) if hasattr(model, "blocks") else model.render()[None]
            loss = torch.nn.functional.mse_loss(pred, target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    for mod in mods:
        tprune.remove(mod, "weight")
    return model


def prune_models(model, images: torch.Tensor, frames: list[int], cfg: PruneConfig,
                 progress: Callable[[str], Any] | None = None) -> PruneResult:
    """Every (ranking, amount) pruned model, its PSNR and parameter counts, plus L1 unstructured at equal sparsity.

    `images` (T, 3, H, W) are what PSNR is measured against, aligned with `frames` (all frames of a NeRV)."""
    cfg.validate(model)
    layers = list(cfg.layers or model.layer_names)
    model = model.eval()
    base = {**psnr(model, images, frames), **count_params(model)}
    rows, models, secs = [], {}, {}
    gen = torch.Generator().manual_seed(int(cfg.seed))
    for by in cfg.by:
        t0 = time.perf_counter()
        scores = {la: neuron_scores(model, la, by, cfg.mode, cfg.frames or frames, gen) for la in layers}
        secs[by] = time.perf_counter() - t0
        for amount in cfg.amounts:
            if progress is not None:
                progress(f"{by} {amount:g}")
            removed = {la: lowest(s, amount) for la, s in scores.items()}
            pruned = structured(model, removed)
            row = {"method": by, "amount": amount, **count_params(pruned), **psnr(pruned, images, frames),
                   "removed_neurons": {la: int(r.sum()) for la, r in removed.items()}}
            if cfg.finetune_epochs:
                pruned = finetune(pruned, images, frames, layers, cfg.finetune_epochs, cfg.lr, cfg.seed)
                tuned = psnr(pruned, images, frames)
                row.update(psnr_finetuned=tuned["psnr"], psnr_8bit_finetuned=tuned["psnr_8bit"])
            name = f"{by}_{amount:g}"
            models[name], row["name"] = pruned, name
            rows.append(row)
    if cfg.unstructured:
        rows += _l1_rows(model, images, frames, layers, cfg, base, rows, models)
    return PruneResult(base, rows, models, secs)


def _l1_rows(model, images, frames, layers, cfg, base, rows, models) -> list[dict[str, Any]]:
    """NeRV's global L1 unstructured pruning removing as many weights as each structured amount did."""
    out = []
    for amount in cfg.amounts:
        ref = next(r for r in rows if r["amount"] == amount)
        n = base["nonzero"] - ref["nonzero"]  # weights the structured run zeroed (biases stay)
        pruned = unstructured_l1(model, layers, n)
        row = {"method": "l1-unstructured", "amount": amount, **count_params(pruned), **psnr(pruned, images, frames),
               "removed_weights": int(n)}
        if cfg.finetune_epochs:
            pruned = finetune(pruned, images, frames, layers, cfg.finetune_epochs, cfg.lr, cfg.seed)
            tuned = psnr(pruned, images, frames)
            row.update(psnr_finetuned=tuned["psnr"], psnr_8bit_finetuned=tuned["psnr_8bit"])
        row["name"] = f"l1-unstructured_{amount:g}"
        models[row["name"]] = pruned
        out.append(row)
    return out


def save_prune(res: PruneResult, out, cfg: PruneConfig, *, model_dir, ground_truth: str, argv: list[str],
               overwrite: bool = False) -> None:
    """OUT/models/<method>_<amount>/ (model dirs), results.json, results.csv, config.json, figures/ (atomic)."""
    import csv
    import dataclasses
    from pathlib import Path

    from xinc import __version__
    from xinc.models.io import read_model_dir_config, save_model
    from xinc.outputs import owned_output
    from xinc.report.prune_plot import psnr_vs_params
    from xinc.utils import to_jsonable, write_json

    out, model_dir = Path(out), Path(model_dir)
    src_cfg = read_model_dir_config(model_dir)
    with owned_output(out, inputs=(model_dir,), overwrite=overwrite, kind="prune") as stage:
        for row in res.rows:
            save_model(res.models[row["name"]], stage / "models" / row["name"],
                       extra={"prune": {**to_jsonable(row), "source_model": str(model_dir.resolve())},
                              **{k: v for k, v in src_cfg.items() if k in ("train", "import")}})
        results = {"baseline": res.baseline, "runs": res.rows, "ranking_seconds": res.scores_seconds,
                   "ground_truth": ground_truth}
        write_json(stage / "results.json", to_jsonable(results))
        keys = ["name", "method", "amount", "params", "nonzero", "psnr", "psnr_8bit", "psnr_finetuned"]
        with open(stage / "results.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
            w.writeheader()
            w.writerows(res.rows)
        write_json(stage / "config.json", {"command": "xinc prune", "argv": list(argv), "xinc_version": __version__,
                                           "model_dir": str(model_dir.resolve()), "ground_truth": ground_truth,
                                           "prune": to_jsonable(dataclasses.asdict(cfg))})
        psnr_vs_params(results, stage)
