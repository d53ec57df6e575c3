"""Models: encodings (incl. NeRV's float64 PE product), coordinates, parameter counts, valid/invalid configs."""

from __future__ import annotations

import math

import pytest
import torch

from xinc.errors import XincError
from xinc.models import (
    FFN,
    FFNConfig,
    FourierFeatures,
    FramePositionalEncoding,
    NeRV,
    NeRVConfig,
    build_model,
    nerv_config_for_budget,
    nerv_param_count,
    pixel_coords,
)
from xinc.train.quant import num_params


def test_pixel_coords_128x256_normalisation():
    c = pixel_coords(128, 256)
    assert c.shape == (128 * 256, 2) and c.dtype == torch.float32
    rows, cols = c[:, 0], c[:, 1]
    assert rows.min().item() == pytest.approx(-1.0) and rows.max().item() == pytest.approx(2 * (127 / 255 - 0.5))
    assert rows.max().item() == pytest.approx(-0.0039, abs=1e-4)
    assert cols.min().item() == pytest.approx(-1.0) and cols.max().item() == pytest.approx(1.0)
    # row-major order, (row, col): the second pixel is row 0, col 1
    assert torch.allclose(c[1], torch.tensor([-1.0, 2 * (1 / 255 - 0.5)]))
    assert torch.allclose(c[256], torch.tensor([2 * (1 / 255 - 0.5), -1.0]))


def test_fourier_features_sines_then_cosines():
    g = torch.Generator().manual_seed(0)
    ff = FourierFeatures(2, 5, sigma=10.0, generator=g)
    assert ff.B.shape == (5, 2) and ff.out_dim == 10
    assert ff.B.std().item() == pytest.approx(10.0, rel=0.8)  # N(0, sigma^2) entries
    v = pixel_coords(4, 8)
    out = ff(v)
    proj = 2 * math.pi * v.double() @ ff.B.double().t()
    assert torch.allclose(out[:, :5].double(), torch.sin(proj), atol=1e-5)
    assert torch.allclose(out[:, 5:].double(), torch.cos(proj), atol=1e-5)


def _explicit_pe(t: torch.Tensor, base: float, levels: int) -> torch.Tensor:
    """SPEC 1.2 spelled out: bases in float32, product and sin/cos in float64, cast to float32."""
    bases32 = torch.tensor([base], dtype=torch.float32) ** torch.arange(levels, dtype=torch.float32) * math.pi
    prod = t.double()[:, None] * bases32.double()[None]
    return torch.cat([torch.sin(prod), torch.cos(prod)], dim=1).float()


def test_frame_pe_float64_product():
    pe = FramePositionalEncoding(1.25, 80)
    t = torch.arange(30, dtype=torch.float64) / 30
    out = pe(t)
    assert out.shape == (30, 160, 1, 1) and out.dtype == torch.float32
    expected = _explicit_pe(t, 1.25, 80)
    assert torch.equal(out[:, :, 0, 0], expected)
    assert pe.bases[-1].item() == pytest.approx(1.25**79 * math.pi, rel=1e-6)
    assert pe.bases[-1].item() > 1e8  # top base ~1.4e8
    # a float32 product loses the phase for the top bases: clearly different there, equal at the bottom
    prod32 = t.float()[:, None] * pe.bases[None]
    sin32 = torch.sin(prod32)
    top_diff = (sin32[:, -10:] - expected[:, 70:80]).abs().max().item()
    low_diff = (sin32[:, :10] - expected[:, :10]).abs().max().item()
    assert top_diff > 0.1
    assert low_diff < 1e-5


def test_paper_ffn_param_count_and_trace():
    model = FFN(FFNConfig())
    assert num_params(model) == 32_971
    assert [tuple(layer.weight.shape) for layer in model.layers] == [(104, 208), (104, 104), (3, 104)]
    small = FFN(FFNConfig(height=4, width=8))
    tr = small.trace()
    assert [tr.inputs[n].shape[1] for n in small.layer_names] == [208, 104, 104]
    assert torch.allclose(tr.output, small(small.coords()))


def test_paper_nerv_param_count():
    cfg = nerv_config_for_budget()
    assert cfg.fc_dim == 37 and cfg.widths == [31, 26, 22] and cfg.fc_hw == [8, 16]
    model = NeRV(cfg)
    assert num_params(model) == nerv_param_count(cfg) == 978_557
    assert [tuple(b.conv.weight.shape) for b in model.blocks] == [(496, 37, 3, 3), (104, 31, 3, 3), (88, 26, 3, 3)]


@pytest.mark.parametrize(
    "size,strides,ks,modelsize",
    [
        ((64, 128), [2, 2, 2, 2], None, 0.3),
        ((48, 96), [3, 2, 2], [1, 3, 5], 0.2),
        ((32, 64), [4, 2], [5, 3], 0.05),
        ((40, 40), [5, 2], None, 0.05),
    ],
)
def test_other_nerv_configs_build(size, strides, ks, modelsize):
    cfg = nerv_config_for_budget(*size, num_frames=5, strides=strides, kernel_sizes=ks, modelsize=modelsize)
    model = NeRV(cfg)
    n = num_params(model)
    assert n == nerv_param_count(cfg) and n <= modelsize * 1e6
    bigger = nerv_config_for_budget(*size, num_frames=5, strides=strides, kernel_sizes=ks, fc_dim=cfg.fc_dim + 1)
    assert nerv_param_count(bigger) > modelsize * 1e6  # fc_dim is the largest within the budget
    with torch.no_grad():
        out = model([0, 4])
    assert out.shape == (2, 3, *size)
    tr = model.trace([1])
    assert set(model.layer_names) <= set(tr.inputs)


def test_invalid_configs_error():
    with pytest.raises(ValueError, match="not divisible"):
        nerv_config_for_budget(100, 200, strides=[4, 2, 2])
    with pytest.raises(ValueError, match="odd"):
        NeRV(NeRVConfig(kernel_sizes=[3, 4, 3]))
    with pytest.raises(ValueError, match="too small"):
        nerv_config_for_budget(modelsize=0.0001)
    with pytest.raises(XincError, match="activation"):
        build_model(FFNConfig(activation="swish"))
    with pytest.raises(XincError, match="base grid"):
        build_model(NeRVConfig(height=120))


def test_ffn_variants_build():
    for cfg in (FFNConfig(height=8, width=8, layers=5, hidden=16), FFNConfig(height=8, width=8, activation="sine",
                                                                              encoding="none", hidden=16)):
        m = FFN(cfg)
        assert m.render().shape == (3, 8, 8)
        assert len(m.layer_names) == cfg.layers


@pytest.mark.parametrize("cfg", [FFNConfig(height=8, width=8, hidden=16), FFNConfig(height=8, width=8, hidden=16,
                                                                                 activation="sine"),
                                 NeRVConfig(height=32, width=64, strides=[2, 2], kernel_sizes=[3, 3], widths=[8, 6],
                                            fc_hw=[8, 16], fc_dim=12, num_frames=2)])
def test_generator_is_the_only_randomness(cfg):
    """A model built with a generator is the same whatever the global RNG did before (reproducible seeds)."""
    states = []
    for junk in (0, 123):
        torch.manual_seed(junk)
        m = build_model(cfg, torch.Generator().manual_seed(7))
        states.append(m.state_dict())
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k
    other = build_model(cfg, torch.Generator().manual_seed(8)).state_dict()
    assert any(not torch.equal(states[0][k], other[k]) for k in other if other[k].numel() > 1)
    lin = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear | torch.nn.Conv2d)][0]
    bound = 1 / math.sqrt(lin.weight[0].numel())  # PyTorch's default scale is kept (SIREN: its own, smaller)
    assert 0 < lin.weight.abs().max() <= bound


@pytest.mark.shared
def test_reference_nerv_reproduces_psnr(shared_dir):
    from xinc.data.frames import load_frames
    from xinc.train.metrics import psnr_float

    ckpt = torch.load(shared_dir / "reference/nerv_bunny30_paper_config.pth", map_location="cpu", weights_only=True)
    sd = ckpt["state_dict"]
    mapped = {}
    for k, v in sd.items():
        k2 = k.replace("decoder.0.conv.downconv", "stem").replace("head_layer", "head")
        for i in (1, 2, 3):
            k2 = k2.replace(f"decoder.{i}.conv.upconv.0", f"blocks.{i - 1}.conv")
        mapped[k2] = v
    model = NeRV(nerv_config_for_budget(num_frames=30))
    model.load_state_dict(mapped)
    gt = load_frames(shared_dir / "data/bunny_360p", (320, 640), (128, 256), [0, 9])
    with torch.no_grad():
        pred = model([0, 9])
    p = psnr_float(pred, gt)
    assert p[0].item() == pytest.approx(27.386, abs=2e-3)
    assert p[1].item() == pytest.approx(27.823, abs=2e-3)
