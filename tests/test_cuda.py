"""CUDA vs CPU: every canvas rule, every standard reducer (fused and streamed) and every analysis give the same
numbers on a GPU as on the CPU (float32 round-off). Runs only where torch sees a CUDA device; skips otherwise."""

from __future__ import annotations

import json
import math

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device visible to torch: the CUDA paths are not exercised here")

from xinc.canvas import Collect, GroupSums, HeatMap, NeuronTotals, compute_canvas, stream_canvas  # noqa: E402
from xinc.models import FFN, FFNConfig, NeRV, NeRVConfig  # noqa: E402

TOL = dict(rtol=1e-4, atol=1e-5)


def _ffn(act: str = "relu") -> FFN:
    g = torch.Generator().manual_seed(0)
    return FFN(FFNConfig(height=12, width=20, hidden=9, layers=3, activation=act, num_features=6), generator=g).eval()


def _nerv() -> NeRV:
    cfg = NeRVConfig(height=16, width=24, num_frames=3, embed="pe_1.25_8", fc_hw=[2, 3], fc_dim=6,
                     strides=[2, 2, 2], kernel_sizes=[3, 3, 3], widths=[6, 5, 4], head_ks=3)
    torch.manual_seed(0)
    m = NeRV(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5)
    return m.eval()


CASES = [("ffn", act, layer, mode, pc) for act in ("relu", "sine") for layer in ("layer1", "layer2", "layer3")
         for mode in ("paper", "linear") for pc in (False, True)]
CASES += [("nerv", "gelu", layer, mode, pc) for layer in ("block1", "block2", "block3", "head")
          for mode in ("paper", "linear") for pc in (False, True)
          if not (pc and mode == "paper" and layer != "head")]


@pytest.mark.parametrize("kind,act,layer,mode,per_channel", CASES)
def test_rule_cuda_matches_cpu(kind, act, layer, mode, per_channel):
    m = _ffn(act) if kind == "ffn" else _nerv()
    frame = 0 if kind == "ffn" else 1
    cpu = compute_canvas(m, layer, frame, mode=mode, per_channel=per_channel)
    gpu = compute_canvas(m, layer, frame, mode=mode, per_channel=per_channel, device="cuda")
    torch.testing.assert_close(gpu.maps, cpu.maps, **TOL)
    for key, value in cpu.residual.items():
        if key.endswith("max_abs"):
            assert math.isfinite(gpu.residual[key]) and gpu.residual[key] <= max(10 * value, 1e-4)


@pytest.mark.parametrize("layer", ["layer2", "block2", "head"])
@pytest.mark.parametrize("fused", [True, False])
def test_reducers_cuda_match_cpu(layer, fused):
    m = _ffn() if layer.startswith("layer") else _nerv()
    H, W = m.config.height, m.config.width
    frames = [0] if layer.startswith("layer") else [0, 2]
    labels = (torch.arange(H * W) % 3).reshape(H, W)

    def reduce(device):
        reds = [HeatMap(), NeuronTotals()] if fused else [HeatMap(), NeuronTotals(), GroupSums(labels, 3), Collect()]
        stream_canvas(m, layer, frames, reds, device=device, fused=fused)
        return [r.result() if hasattr(r, "result") else r.results for r in reds]

    for a, b in zip(reduce("cpu"), reduce("cuda")):
        for f in frames:
            torch.testing.assert_close(torch.as_tensor(b[f]).cpu().float(), torch.as_tensor(a[f]).float(), **TOL)


def _numbers(x, path=""):
    """Flatten the numeric leaves of a results.json section: {path: float}."""
    if isinstance(x, dict):
        return {k: v for key, val in x.items() for k, v in _numbers(val, f"{path}/{key}").items()}
    if isinstance(x, list):
        return {k: v for i, val in enumerate(x) for k, v in _numbers(val, f"{path}[{i}]").items()}
    if isinstance(x, bool) or not isinstance(x, int | float):
        return {}
    return {path: float(x)}


def test_every_analysis_cuda_matches_cpu(tmp_path):
    """Train tiny models on a synthetic clip, then `xinc analyze` all analyses on CPU and on CUDA."""
    from xinc.cli.main import main
    from xinc.data.synth import generate_synthetic

    data = tmp_path / "data"
    generate_synthetic(data, "cityscapes-vps", seed=0, frames=5, size=(32, 64), videos=1, flo=False)
    for kind, args in (("ffn", ["--steps", "20", "--width", "16"]),
                       ("nerv", ["--epochs", "3", "--strides", "2", "2", "2", "--fc-dim", "8"])):
        mdir = tmp_path / f"m_{kind}"
        src = (["--image", str(next((data / "val" / "img_all").glob("*.png")))] if kind == "ffn" else
               ["--dataset", "cityscapes-vps", "--root", str(data), "--video", "0001"])
        assert main(["train", kind, *src, "--out", str(mdir), "--size", "32x64", "--device", "cpu",
                     "--no-progress", *args]) == 0
        res = {}
        for dev in ("cpu", "cuda"):
            out = tmp_path / f"a_{kind}_{dev}"
            assert main(["analyze", str(mdir), "--out", str(out), "--dataset", "cityscapes-vps", "--root", str(data),
                         "--video", "0001", "--device", dev, "--no-progress", "--mode", "both"]) == 0
            res[dev] = json.loads((out / "results.json").read_text())
        aids = [k for k in res["cpu"] if k.startswith("a") and k[1:].isdigit()]
        assert aids and aids == [k for k in res["cuda"] if k.startswith("a") and k[1:].isdigit()]
        for aid in aids:
            a, b = _numbers(res["cpu"][aid]), _numbers(res["cuda"][aid])
            assert a.keys() == b.keys(), aid
            bad = [k for k in a if not (math.isclose(a[k], b[k], rel_tol=1e-3, abs_tol=1e-5)
                                        or (math.isnan(a[k]) and math.isnan(b[k])))]
            assert not bad, f"{kind} {aid}: {bad[:5]}"
