"""Training: PSNR improves, same seed -> same weights, resume == uninterrupted, lr schedule, metrics, quantisation."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from xinc.errors import XincError
from xinc.models import load_model
from xinc.train import (
    TrainFFNConfig,
    TrainNeRVConfig,
    nerv_lr,
    psnr_8bit,
    psnr_float,
    quantize_model,
    quantize_tensor,
    train_ffn,
    train_nerv,
    warmup_cosine_mult,
)
from xinc.train.common import predict
from xinc.utils import partial_dir


def smooth_video(t: int, h: int, w: int) -> torch.Tensor:
    """A smooth moving colour pattern (T, 3, H, W) in [0, 1] that small INRs can fit quickly."""
    y = torch.linspace(0, 1, h)[:, None]
    x = torch.linspace(0, 1, w)[None, :]
    frames = []
    for k in range(t):
        s = k / max(t, 1)
        frames.append(torch.stack([
            0.5 + 0.4 * torch.sin(2 * math.pi * (x + s)) * torch.cos(math.pi * y),
            0.5 + 0.4 * torch.cos(2 * math.pi * (y * 1.5 - s + 0 * x)),
            0.5 + 0.3 * torch.sin(2 * math.pi * (x + y + 2 * s)),
        ]))
    return torch.stack(frames)


def ffn_cfg(out, **kw) -> TrainFFNConfig:
    base = dict(out=str(out), size=(16, 32), hidden=32, steps=40, eval_every=10, device="cpu", progress=False)
    base.update(kw)
    return TrainFFNConfig(**base)


def nerv_cfg(out, **kw) -> TrainNeRVConfig:
    base = dict(out=str(out), size=(16, 32), strides=[2, 2], fc_dim=8, epochs=8, eval_every=2, device="cpu",
                progress=False)
    base.update(kw)
    return TrainNeRVConfig(**base)


IMG = smooth_video(1, 16, 32)[0]
VID = smooth_video(4, 16, 32)


def weights(out) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model.safetensors"))


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Interrupt(KeyboardInterrupt):
    pass


def interrupt_at(when: int):
    def cb(step, rec):
        if step == when:
            raise Interrupt()

    return cb


def test_ffn_training_improves_and_writes_layout(tmp_path):
    out = tmp_path / "ffn"
    res = train_ffn(ffn_cfg(out, steps=60), target=IMG)
    m = res.metrics
    assert res.out_dir == out and sorted(p.name for p in out.iterdir()) == [
        ".xinc-output.json", "config.json", "metrics.json", "model.safetensors"]
    assert json.loads((out / ".xinc-output.json").read_text())["kind"] == "train"
    assert not partial_dir(out).exists() and not (tmp_path / "ffn.lock").exists()
    assert m["best_psnr"] > m["initial_psnr"] + 5
    assert len(m["psnr"]) == 6 and [e["step"] for e in m["evals"]] == [10, 20, 30, 40, 50, 60]
    assert m["best_psnr"] == max(m["psnr"])
    n = m["num_params"]
    assert n == 64 * 32 + 32 + 32 * 32 + 32 + 32 * 3 + 3
    assert m["bpp_32bit"] == pytest.approx(32 * n / (16 * 32))
    assert 8 * n / 512 < m["bpp_8bit"] < m["bpp_32bit"] / 3
    assert abs(m["psnr_8bit_weights"] - m["best_psnr"]) < 1.0
    assert m["steps_per_s"] > 0 and m["wall_time_s"] > 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["kind"] == "ffn" and cfg["train"]["steps"] == 60 and cfg["train"]["seed"] == 0
    model = load_model(out)  # rebuilt from the directory alone
    pred = predict(model)
    assert psnr_8bit(pred, IMG[None]).item() == pytest.approx(m["best_psnr"], abs=1e-4)


def test_siren_trains(tmp_path):
    res = train_ffn(ffn_cfg(tmp_path / "s", encoding="none", activation="sine", lr=1e-3, steps=60), target=IMG)
    assert res.metrics["best_psnr"] > res.metrics["initial_psnr"] + 3


def test_ffn_same_seed_same_weights(tmp_path):
    train_ffn(ffn_cfg(tmp_path / "a", steps=20), target=IMG)
    train_ffn(ffn_cfg(tmp_path / "b", steps=20), target=IMG)
    train_ffn(ffn_cfg(tmp_path / "c", steps=20, seed=1), target=IMG)
    assert same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))
    assert not same_weights(weights(tmp_path / "a"), weights(tmp_path / "c"))


def test_ffn_resume_matches_uninterrupted(tmp_path):
    full = train_ffn(ffn_cfg(tmp_path / "full"), target=IMG)
    out = tmp_path / "cut"
    with pytest.raises(Interrupt):
        train_ffn(ffn_cfg(out), target=IMG, callback=interrupt_at(20))
    assert not out.exists() and (partial_dir(out) / "checkpoint.json").is_file()
    res = train_ffn(ffn_cfg(out, resume=True), target=IMG)
    assert res.metrics["resumed"] and not partial_dir(out).exists()
    assert same_weights(weights(tmp_path / "full"), weights(out))
    assert res.metrics["psnr"] == full.metrics["psnr"]


def test_resume_with_other_options_errors(tmp_path):
    out = tmp_path / "x"
    with pytest.raises(Interrupt):
        train_ffn(ffn_cfg(out), target=IMG, callback=interrupt_at(10))
    with pytest.raises(XincError, match="different options"):
        train_ffn(ffn_cfg(out, lr=1e-2, resume=True), target=IMG)
    assert (partial_dir(out) / "checkpoint.json").is_file()  # the interrupted run is untouched


def test_nerv_training_improves(tmp_path):
    out = tmp_path / "nerv"
    res = train_nerv(nerv_cfg(out, epochs=20, eval_every=10, lr=1e-2), frames=VID)
    m = res.metrics
    assert m["best_psnr"] > m["initial_psnr"] + 3
    assert m["num_frames"] == 4 and len(m["per_frame_psnr"]) == 4
    assert m["steps"] == 20 * 2 and [e["epoch"] for e in m["evals"]] == [10, 20]
    model = load_model(out)
    assert model.config.num_frames == 4 and model.config.fc_dim == 8
    ps = psnr_float(predict(model), VID)
    assert ps.mean().item() == pytest.approx(m["best_psnr"], abs=1e-4)


def test_nerv_same_seed_same_weights_and_resume(tmp_path):
    full = train_nerv(nerv_cfg(tmp_path / "a", epochs=6, batch=3), frames=VID)  # batch 3 of 4: a short last batch
    train_nerv(nerv_cfg(tmp_path / "b", epochs=6, batch=3), frames=VID)
    train_nerv(nerv_cfg(tmp_path / "c", epochs=6, batch=3, seed=3), frames=VID)
    assert same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))
    assert not same_weights(weights(tmp_path / "a"), weights(tmp_path / "c"))
    out = tmp_path / "cut"
    with pytest.raises(Interrupt):
        train_nerv(nerv_cfg(out, epochs=6, batch=3), frames=VID, callback=interrupt_at(4))
    assert not out.exists()
    res = train_nerv(nerv_cfg(out, epochs=6, batch=3, resume=True), frames=VID)
    assert res.metrics["resumed"]
    assert same_weights(weights(tmp_path / "a"), weights(out))
    assert res.metrics["psnr"] == full.metrics["psnr"]


def test_lr_schedule_shape():
    assert warmup_cosine_mult(0.0) == pytest.approx(0.1)
    assert warmup_cosine_mult(0.05) == pytest.approx(0.55)
    assert warmup_cosine_mult(0.1) == pytest.approx(1.0)
    assert warmup_cosine_mult(0.55) == pytest.approx(0.5)
    assert warmup_cosine_mult(1.0) == pytest.approx(0.0, abs=1e-12)
    lrs = [nerv_lr(1e-3, e, i, 15, 20) for e in range(20) for i in range(15)]
    peak = lrs.index(max(lrs))
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1:peak + 1]))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:]))


@pytest.mark.shared
def test_lr_schedule_matches_reference(shared_dir):
    ref = json.loads((shared_dir / "reference/nerv_bunny30_paper_config.json").read_text())
    expected = ref["training"]
    last = ref["result"]["lr_at_last_step_of_epoch"]
    epochs, spe = expected["epochs"], expected["steps"] // expected["epochs"]
    ours = [nerv_lr(expected["lr_schedule"]["peak_lr"], e, spe - 1, spe, epochs) for e in range(epochs)]
    assert ours == pytest.approx(last, rel=1e-9, abs=1e-15)


def test_quantisation_roundtrip():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(7, 5, 3, 3, generator=g)
    qt = quantize_tensor(w)
    assert qt.q.dtype == torch.uint8 and qt.min.shape == (7, 1)
    err = (qt.dequantize() - w).abs().reshape(7, -1).max(dim=1).values
    assert torch.all(err <= qt.scale[:, 0] / 2 + 1e-6)
    assert qt.num_bits == 8 * w.numel() + 32 * 14
    const = quantize_tensor(torch.full((4,), 0.25))
    assert torch.equal(const.dequantize(), torch.full((4,), 0.25))
    from xinc.models import FFN, FFNConfig

    m = FFN(FFNConfig(height=4, width=4, hidden=8))
    qm, bits = quantize_model(m)
    assert torch.equal(qm.encoding.B, m.encoding.B)  # buffers stay float
    assert bits == sum(8 * p.numel() + 64 * (p.shape[0] if p.dim() >= 2 else 1) for p in m.parameters())


def test_psnr_definitions():
    gt = torch.full((1, 3, 4, 4), 0.5)
    pred = gt + 0.1
    assert psnr_float(pred, gt).item() == pytest.approx(20.0)
    over = torch.full((1, 3, 4, 4), 1.3)
    assert psnr_8bit(over, torch.ones(1, 3, 4, 4)).item() == math.inf  # clamped to 1
    assert psnr_float(over, torch.ones(1, 3, 4, 4)).item() < 20


def test_bad_api_options(tmp_path):
    for kw, msg in ((dict(steps=0), "--steps"), (dict(lr=-1.0), "--lr"), (dict(lr=float("nan")), "--lr"),
                    (dict(activation="swish"), "--activation"), (dict(size=(0, 4)), "--size")):
        with pytest.raises(XincError, match=msg):
            train_ffn(ffn_cfg(tmp_path / "o", **kw), target=IMG)
    with pytest.raises(XincError, match="divisible"):
        train_nerv(nerv_cfg(tmp_path / "o", size=(10, 32)), frames=VID)
    with pytest.raises(XincError, match="tensor"):
        train_nerv(nerv_cfg(tmp_path / "o"), frames=VID[:, :, :8])
    assert not (tmp_path / "o").exists() and not partial_dir(tmp_path / "o").exists()


def test_panoptic_source_if_available(tmp_path):
    """`--dataset` path: train on all frames of a generated clip; reconstruct finds the ground truth again."""
    panoptic = pytest.importorskip("xinc.data.panoptic")
    synth = pytest.importorskip("xinc.data.synth")
    if not hasattr(panoptic, "load_panoptic_clip") or not hasattr(synth, "generate_synthetic"):
        pytest.skip("panoptic loader or synthetic generator not available")
    from xinc.cli.main import main

    root = tmp_path / "vipseg"
    video = synth.generate_synthetic(root, format="vipseg", frames=4, size=(32, 64))["video_ids"][0]
    out = tmp_path / "nerv"
    res = train_nerv(nerv_cfg(out, dataset="vipseg", root=str(root), video=video, epochs=2, eval_every=1))
    assert res.metrics["num_frames"] == 4
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["data"]["kind"] == "dataset" and cfg["train"]["data"]["video"] == video
    rec = tmp_path / "rec"
    assert main(["reconstruct", str(out), "--out", str(rec), "--device", "cpu"]) == 0
    psnr = json.loads((rec / "psnr.json").read_text())
    assert psnr["psnr_float"] == pytest.approx(res.metrics["per_frame_psnr"], abs=1e-4)


@pytest.mark.shared
def test_nerv_reproduces_reference_training(shared_dir, tmp_path):
    """Paper NeRV on the reference's 30 bunny frames: init, shuffle, lr and loss match its first-epoch PSNR."""
    ref = json.loads((shared_dir / "reference/nerv_bunny30_paper_config.json").read_text())
    expected = ref["result"]["mean_psnr_per_epoch"]
    got = []

    def stop(epoch, rec):
        got.append(rec["psnr"])
        if epoch == 1:
            raise Interrupt()

    cfg = TrainNeRVConfig(video=str(shared_dir / "data/bunny_360p"), frames=30, crop=(320, 640),
                          out=str(tmp_path / "n"), epochs=ref["training"]["epochs"], eval_every=1, seed=0,
                          device="cpu", progress=False)
    with pytest.raises(Interrupt):
        train_nerv(cfg, callback=stop)
    assert got == pytest.approx(expected[:1], abs=1e-4)


def test_resume_after_finish_keeps_result(tmp_path):
    out = tmp_path / "done"
    first = train_ffn(ffn_cfg(out, steps=10), target=IMG)
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    again = train_ffn(ffn_cfg(out, steps=10, resume=True), target=IMG)
    assert again.metrics == first.metrics and (out / "model.safetensors").stat().st_mtime_ns == stamp


def test_nerv_options_build_valid_models():
    """Paper defaults give 978,557 parameters; explicit widths/strides/kernels get fc_dim from the budget."""
    from xinc.models import NeRV
    from xinc.train.nerv import nerv_model_config
    from xinc.train.quant import num_params

    assert num_params(NeRV(nerv_model_config(TrainNeRVConfig(), 30))) == 978_557
    cfg = TrainNeRVConfig(size=(48, 96), strides=[3, 2, 2], kernel_sizes=[1, 3, 5], widths=[20, 12, 8], modelsize=0.2)
    mc = nerv_model_config(cfg, 5)
    assert mc.widths == [20, 12, 8] and num_params(NeRV(mc)) <= 0.2e6
    bigger = nerv_model_config(TrainNeRVConfig(**{**cfg.__dict__, "fc_dim": mc.fc_dim + 1}), 5)
    assert num_params(NeRV(bigger)) > 0.2e6
    for bad in (dict(widths=[8, 8]), dict(kernel_sizes=[3, 2, 3]), dict(size=(100, 200)), dict(modelsize=1e-5)):
        with pytest.raises(XincError):
            c = TrainNeRVConfig(out="x", video="v", **bad)
            from xinc.train.nerv import validate_nerv_config

            validate_nerv_config(c)
            nerv_model_config(c, 5)
