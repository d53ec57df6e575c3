"""The one training loop (xinc.train.loop) against plain, loop-free reference trainings; configs declared once."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from xinc.errors import XincError
from xinc.models.ffn import FFNConfig
from xinc.models.io import build_model
from xinc.train import TrainFFNConfig, TrainNeRVConfig, nerv_lr, psnr_8bit, psnr_float, train_ffn, train_nerv
from xinc.train.common import predict
from xinc.train.nerv import nerv_model_config
from xinc.utils import seed_everything


def pattern(t: int, h: int, w: int) -> torch.Tensor:
    y, x = torch.linspace(0, 1, h)[:, None], torch.linspace(0, 1, w)[None, :]
    return torch.stack([torch.stack([0.5 + 0.4 * torch.sin(2 * math.pi * (x + k / t)) * torch.cos(math.pi * y),
                                     0.5 + 0.3 * torch.cos(2 * math.pi * (1.5 * y - k / t)) + 0 * x,
                                     0.5 + 0.3 * torch.sin(2 * math.pi * (x + y + 2 * k / t))]) for k in range(t)])


def best_of(evals: list[tuple[int, float, dict]]) -> tuple[int, dict]:
    """(unit, weights) of the first evaluation with the highest PSNR."""
    unit, best, state = 0, -math.inf, None
    for u, p, s in evals:
        if p > best:
            unit, best, state = u, p, s
    return unit, state


def ffn_reference(img: torch.Tensor, cfg: TrainFFNConfig):
    """The FFN recipe written out by hand: seeded init, full-image MSE, Adam, 8-bit PSNR every eval_every steps."""
    mc = FFNConfig(height=cfg.size[0], width=cfg.size[1], hidden=cfg.hidden, layers=cfg.layers)
    model = build_model(mc, seed_everything(cfg.seed))
    feats = model.encode(model.coords(torch.device("cpu"))).detach()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)

    def out():
        h = feats
        for i, layer in enumerate(model.layers):
            h = model.activation(i, layer(h))
        return h

    evals = []
    for step in range(1, cfg.steps + 1):
        opt.zero_grad()
        F.mse_loss(out(), img.reshape(3, -1).t()).backward()
        opt.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            with torch.no_grad():
                p = float(psnr_8bit(out().t().reshape(img.shape), img)[0])
            evals.append((step, p, {k: v.clone() for k, v in model.state_dict().items()}))
    return evals


def test_ffn_loop_matches_plain_training(tmp_path):
    img = pattern(1, 12, 20)[0]
    cfg = TrainFFNConfig(out=str(tmp_path / "f"), size=(12, 20), hidden=16, layers=2, steps=25, eval_every=10,
                         device="cpu", progress=False)
    res = train_ffn(cfg, target=img)
    ref = ffn_reference(img, cfg)
    unit, state = best_of(ref)
    got = load_file(str(tmp_path / "f" / "model.safetensors"))
    assert got.keys() == state.keys() and all(torch.equal(got[k], state[k]) for k in got)
    m = res.metrics
    assert m["psnr"] == [p for _, p, _ in ref] and [e["step"] for e in m["evals"]] == [10, 20, 25]
    assert m["best_step"] == unit and m["best_psnr"] == max(p for _, p, _ in ref) and m["steps"] == 25


def nerv_reference(video: torch.Tensor, cfg: TrainNeRVConfig):
    """The NeRV recipe by hand: seeded init, per-epoch seeded shuffle, consecutive batches, lr set every step."""
    model = build_model(nerv_model_config(cfg, video.shape[0]), seed_everything(cfg.seed))
    T, b = video.shape[0], cfg.batch
    spe = math.ceil(T / b)
    emb = model.embed(list(range(T))).detach()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8)
    gen = torch.Generator().manual_seed(cfg.seed)
    evals = []
    for epoch in range(cfg.epochs):
        perm = torch.randperm(T, generator=gen)
        for i in range(spe):
            for g in opt.param_groups:
                g["lr"] = nerv_lr(cfg.lr, epoch, i, spe, cfg.epochs, cfg.warmup, cfg.warmup_start)
            idx = perm[i * b:(i + 1) * b]
            opt.zero_grad()
            F.mse_loss(model.decode(emb[idx]), video[idx]).backward()
            opt.step()
        if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
            p = psnr_float(predict(model), video).tolist()
            evals.append((epoch + 1, sum(p) / len(p), {k: v.clone() for k, v in model.state_dict().items()}))
    return evals


def test_nerv_loop_matches_plain_training(tmp_path):
    video = pattern(5, 16, 16)
    cfg = TrainNeRVConfig(out=str(tmp_path / "n"), size=(16, 16), strides=[2, 2], fc_dim=6, epochs=5, eval_every=2,
                          batch=2, lr=5e-3, device="cpu", progress=False)
    res = train_nerv(cfg, frames=video)
    ref = nerv_reference(video, cfg)
    unit, state = best_of(ref)
    got = load_file(str(tmp_path / "n" / "model.safetensors"))
    assert all(torch.equal(got[k], state[k]) for k in state)
    m = res.metrics
    assert m["psnr"] == [p for _, p, _ in ref] and [e["epoch"] for e in m["evals"]] == [2, 4, 5]
    assert m["best_epoch"] == unit and m["steps"] == 5 * 3 and m["num_frames"] == 5
    assert len(m["per_frame_psnr"]) == 5 and m["quant_8bit"]["bits"] < 32 * m["num_params"]


def test_metrics_and_checkpoint_layout_kept(tmp_path):
    """The keys of metrics.json and of the resumable checkpoint are those the loop always wrote."""
    from xinc.utils import partial_dir

    ncfg = dict(size=(16, 16), strides=[2, 2], fc_dim=4, epochs=2, eval_every=1, device="cpu", progress=False)

    def stop(unit, rec):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_nerv(TrainNeRVConfig(out=str(tmp_path / "cut"), **ncfg), frames=pattern(3, 16, 16), callback=stop)
    stage = partial_dir(tmp_path / "cut")
    pointer = json.loads((stage / "checkpoint.json").read_text())
    assert set(pointer) == {"folder", "step", "evals", "best_psnr", "best_epoch", "initial", "wall_time_s",
                            "train_time_s"} and pointer["step"] == 1
    state = torch.load(stage / pointer["folder"] / "state.pt", weights_only=True)
    assert set(state) == {"optimizer", "shuffle_rng"}
    assert {p.name for p in (stage / pointer["folder"]).iterdir()} == {"weights.safetensors", "best.safetensors",
                                                                       "state.pt"}
    res = train_nerv(TrainNeRVConfig(out=str(tmp_path / "n"), **ncfg), frames=pattern(3, 16, 16))
    assert {"kind", "psnr_definition", "evals", "psnr", "initial_psnr", "best_psnr", "best_psnr_8bit", "best_epoch",
            "per_frame_psnr", "per_frame_psnr_8bit", "final_psnr", "final_psnr_8bit", "num_params", "num_frames",
            "num_pixels", "bpp_32bit", "bpp_8bit", "quant_8bit", "psnr_8bit_weights", "epochs", "steps", "wall_time_s",
            "train_time_s", "steps_per_s", "s_per_epoch", "resumed", "device"} == set(res.metrics)
    assert set(res.metrics["quant_8bit"]) == {"psnr", "psnr_8bit", "bits", "scheme"}
    ffn = train_ffn(TrainFFNConfig(out=str(tmp_path / "f"), size=(8, 8), hidden=8, steps=3, eval_every=2,
                                   device="cpu", progress=False), target=pattern(1, 8, 8)[0]).metrics
    assert {"best_psnr_float", "best_step", "final_psnr_float"} <= set(ffn) and "num_frames" not in ffn
    assert set(ffn["evals"][0]) == {"step", "psnr", "psnr_float", "loss"}
    cfg = json.loads((tmp_path / "f" / "config.json").read_text())
    assert cfg["train"]["hidden"] == 8 and cfg["train"]["loss"] == "MSE" and cfg["train"]["data"]["kind"] == "tensor"


def test_train_config_from_option_names():
    from xinc.train import train_config, validate_config

    cfg = train_config("ffn", {"width": 8, "depth": 2, "eval-every": 5}, out="o", image="i.png", size="16x32")
    assert (cfg.hidden, cfg.layers, cfg.eval_every) == (8, 2, 5)
    validate_config(cfg)
    assert cfg.size == (16, 32)
    nerv = train_config("nerv", {"strides": (2, 2), "fc_dim": 4}, out="o", video="v")
    assert nerv.strides == [2, 2] and nerv.fc_dim == 4
    with pytest.raises(XincError, match="stepz"):
        train_config("ffn", {"stepz": 3})
    with pytest.raises(XincError, match="gan"):
        train_config("gan", {})
    with pytest.raises(XincError, match="--epochs"):
        validate_config(train_config("nerv", {"epochs": "many"}, out="o", video="v"))


def test_cli_parses_the_library_config():
    """`xinc train ffn` options are the fields of TrainFFNConfig (renamed flags, HxW sizes, native bools)."""
    from xinc.cli.train import parse_config

    cfg = parse_config(TrainFFNConfig, ["--image", "a.png", "--out", "o", "--width", "12", "--depth", "4", "--size",
                                        "24x48", "--crop", "none", "--no-progress"], "xinc train ffn")
    assert isinstance(cfg, TrainFFNConfig) and (cfg.hidden, cfg.layers, cfg.size, cfg.crop) == (12, 4, (24, 48), None)
    assert cfg.progress is False
    nerv = parse_config(TrainNeRVConfig, ["--video", "v", "--out", "o", "--crop", "320x640", "--strides", "5", "4",
                                          "--kernel-sizes", "1", "3"], "xinc train nerv")
    assert (nerv.crop, nerv.strides, nerv.kernel_sizes) == ((320, 640), [5, 4], [1, 3])
    with pytest.raises(XincError, match="--size"):
        parse_config(TrainFFNConfig, ["--size", "big"], "xinc train ffn")


def test_ffn_with_crop_resumes(tmp_path):
    """The recorded crop compares equal to the one read back from config.json (resume used to be refused)."""
    cfg = dict(out=str(tmp_path / "o"), size=(8, 8), crop=(16, 16), hidden=8, steps=4, eval_every=2, device="cpu",
               progress=False)

    def stop(step, rec):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_ffn(TrainFFNConfig(**cfg), target=pattern(1, 8, 8)[0], callback=stop)
    assert train_ffn(TrainFFNConfig(resume=True, **cfg), target=pattern(1, 8, 8)[0]).metrics["resumed"]
