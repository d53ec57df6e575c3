"""`xinc import nerv` / `hnerv-quant`: original-script and quantised checkpoints -> xinc NeRV directories."""

from __future__ import annotations

import json

import pytest
import torch

from xinc.cli.main import main
from xinc.errors import XincError
from xinc.models import NeRV, NeRVConfig, load_model, nerv_config_for_budget
from xinc.models.importers import build_hnerv_import, build_nerv_import, import_nerv_checkpoint


def to_original(model: NeRV) -> dict[str, torch.Tensor]:
    """xinc NeRV weights under the original HNeRV code's names."""
    sd = {"decoder.0.conv.downconv.weight": model.stem.weight, "decoder.0.conv.downconv.bias": model.stem.bias,
          "head_layer.weight": model.head.weight, "head_layer.bias": model.head.bias}
    for i, blk in enumerate(model.blocks):
        sd[f"decoder.{i + 1}.conv.upconv.0.weight"] = blk.conv.weight
        sd[f"decoder.{i + 1}.conv.upconv.0.bias"] = blk.conv.bias
    return {k: v.detach().clone() for k, v in sd.items()}


@pytest.fixture
def tiny(tmp_path):
    """A small random NeRV (16x32, strides 2 2 2, ks 0_1_3) saved in the original script's format."""
    torch.manual_seed(0)
    cfg = nerv_config_for_budget(height=16, width=32, num_frames=5, strides=[2, 2, 2], kernel_sizes=[1, 3, 3],
                                 embed="pe_1.25_8", fc_dim=12, reduce=1.5, lower_width=4)
    model = NeRV(cfg).eval()
    path = tmp_path / "orig.pth"
    torch.save({"epoch": 7, "state_dict": to_original(model), "optimizer": {"state": {}, "param_groups": []}}, path)
    return model, path


FLAGS = {"embed": "pe_1.25_8", "fc_hw": "2_4", "dec_strds": [2, 2, 2], "ks": "0_1_3", "reduce": 1.5,
         "lower_width": 4}


def test_flags_inference_and_json_agree_and_decode_exactly(tiny, tmp_path):
    model, path = tiny
    with torch.no_grad():
        ref = model(list(range(5)))
    cfg_json = tmp_path / "arch.json"
    cfg_json.write_text(json.dumps({"architecture_args": FLAGS, "frames": {"count": 5}}))
    cases = [(FLAGS, None, 5), ({"fc_hw": "2_4"}, None, 5), ({}, cfg_json, None), ({"resize_list": "16_32"}, None, 5)]
    for flags, js, T in cases:
        imported, _, rec = build_nerv_import(path, flags, js, T)
        assert imported.config.strides == [2, 2, 2] and imported.config.kernel_sizes == [1, 3, 3]
        assert imported.config.widths == model.config.widths and imported.config.fc_dim == 12
        with torch.no_grad():
            assert torch.equal(imported(list(range(5))), ref)
        assert rec["frames"] == 5 and rec["recovered"]["epoch"] == 7
    _, _, rec = build_nerv_import(path, {"fc_hw": "2_4"}, None, 5)
    assert rec["architecture_sources"]["dec_strds"].startswith("weights")
    assert rec["architecture_sources"]["fc_hw"] == "flag"
    _, _, rec = build_nerv_import(path, {"dec_strds": [2, 2, 2]}, cfg_json, None)
    assert rec["architecture_sources"]["dec_strds"] == "flag" and rec["architecture_sources"]["ks"] == "json"


@pytest.mark.parametrize("flags, bad", [
    ({"dec_strds": [4, 2, 1]}, "decoder.1.conv.upconv.0.weight"),
    ({"ks": "0_1_5"}, "decoder.3.conv.upconv.0.weight"),
    ({"fc_dim": 11}, "decoder.0.conv.downconv.weight"),
    ({"embed": "pe_1.25_9"}, "decoder.0.conv.downconv.weight"),
    ({"reduce": 1.2, "lower_width": 4}, "decoder.1.conv.upconv.0.weight"),
    ({"dec_strds": [2, 2]}, "decoder.3.conv.upconv.0.weight"),
])
def test_mismatch_names_first_disagreeing_tensor(tiny, flags, bad):
    _, path = tiny
    with pytest.raises(XincError) as e:
        build_nerv_import(path, {**FLAGS, **flags}, None, 5)
    assert repr(bad) in str(e.value) or bad in str(e.value)


def test_unknowable_or_unsupported_is_a_clear_error(tiny, tmp_path):
    _, path = tiny
    with pytest.raises(XincError, match="--fc_hw"):
        build_nerv_import(path, {}, None, 5)
    with pytest.raises(XincError, match="--frames"):
        build_nerv_import(path, {"fc_hw": "2_4"}, None, None)
    with pytest.raises(XincError, match="norm"):
        build_nerv_import(path, {**FLAGS, "norm": "bn"}, None, 5)
    with pytest.raises(XincError, match="pshuffel"):
        build_nerv_import(path, {**FLAGS, "conv_type": ["convnext", "interpolate"]}, None, 5)
    other = tmp_path / "other.pth"
    torch.save({"epoch": 1, "state_dict": {"encoder.0.weight": torch.zeros(1)}}, other)
    with pytest.raises(XincError, match="hnerv-quant"):
        build_nerv_import(other, FLAGS, None, 5)


def test_cli_writes_loadable_model_dir(tiny, tmp_path, capsys):
    model, path = tiny
    out = tmp_path / "m"
    argv = ["import", "nerv", str(path), "--frames", "5", "--embed", "pe_1.25_8", "--fc_hw", "2_4",
            "--dec_strds", "2", "2", "2", "--ks", "0_1_3", "--reduce", "1.5", "--lower_width", "4", "--out", str(out)]
    assert main(argv) == 0
    assert "dec_strds from flag" in capsys.readouterr().out
    loaded = load_model(out)
    with torch.no_grad():
        assert torch.equal(loaded([0, 4]), model([0, 4]))
    cfg = json.loads((out / "config.json").read_text())
    imp = cfg["import"]
    assert imp["format"].startswith("nerv-script") and len(imp["sha256"]) == 64
    assert imp["time_code"].startswith("frame k <-> t = k/5")
    assert main([*argv[:-2], "--dec_strds", "2", "2", "4", "--out", str(tmp_path / "bad")]) == 2
    assert "decoder.3.conv.upconv.0.weight" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def _quantize(t: torch.Tensor, dim: int | None) -> dict[str, torch.Tensor]:
    """HNeRV-style 8-bit quantisation (min/scale per slice along `dim`, float16 like the release)."""
    if dim is None:
        lo, hi = t.min(), t.max()
    else:
        other = tuple(d for d in range(t.dim()) if d != dim)
        lo, hi = t.amin(dim=other, keepdim=True), t.amax(dim=other, keepdim=True)
    scale = ((hi - lo) / 255).clamp_min(1e-8)
    q = ((t - lo) / scale).round().clamp(0, 255).to(torch.uint8)
    if dim is not None:
        lo, scale = lo.half(), scale.half()
    return {"quant": q, "min": lo, "scale": scale}


def test_hnerv_quant_synthetic(tmp_path):
    torch.manual_seed(1)
    cfg = NeRVConfig(kind="hnerv", height=24, width=48, num_frames=4, embed="table", embed_shape=[5, 2, 4],
                     fc_hw=[2, 4], fc_dim=9, strides=[3, 2, 2], kernel_sizes=[1, 3, 5], widths=[8, 7, 6])
    model = NeRV(cfg).eval()
    with torch.no_grad():
        model.embeddings.normal_()
    orig = to_original(model)
    packed = {"embed": _quantize(model.embeddings, 1),
              "model": {k: _quantize(v, 0 if v.dim() == 4 else None) for k, v in orig.items()}}
    path = tmp_path / "q.pth"
    torch.save(packed, path)
    imported, _, rec = build_hnerv_import(path)
    c = imported.config
    assert (c.strides, c.kernel_sizes, c.widths, c.fc_dim, c.num_frames) == ([3, 2, 2], [1, 3, 5], [8, 7, 6], 9, 4)
    assert rec["architecture_sources"]["dec_strds"].startswith("weights")
    deq = {k: (e["min"].float() + e["scale"].float() * e["quant"].float()) for k, e in packed["model"].items()}
    assert torch.equal(imported.head.weight, deq["head_layer.weight"])
    assert torch.equal(imported.embeddings[2], (packed["embed"]["min"].float()
                                                + packed["embed"]["scale"].float() * packed["embed"]["quant"])[2])
    with pytest.raises(XincError, match="stores 4 frame embeddings"):
        build_hnerv_import(path, frames=5)
    out = tmp_path / "h"
    assert main(["import", "hnerv-quant", str(path), "--out", str(out)]) == 0
    assert load_model(out).config.embed == "table"


# ------------------------------------------------------------------ the real reference checkpoints


def test_reference_nerv_reproduces_psnr(shared_dir, tmp_path):
    ref = shared_dir / "reference"
    out = tmp_path / "nerv"
    rec = import_nerv_checkpoint(ref / "nerv_bunny30_paper_config.pth", out, {"crop_list": "320_640"},
                                 ref / "nerv_bunny30_paper_config.json", None, gt=shared_dir / "data" / "bunny_360p")
    expected = json.loads((ref / "nerv_bunny30_paper_config.json").read_text())["result"]
    got = rec["reproduced"]
    assert got["frames"] == list(range(30))
    assert abs(got["mean_psnr_db"] - 27.14) < 0.05
    for k in (0, 9, 29):
        assert abs(got["per_frame_psnr_db"][k] - expected["per_frame_psnr_db"][k]) < 0.05
    model = load_model(out)
    assert sum(p.numel() for p in model.parameters()) == 978_557
    assert model.config.widths == [31, 26, 22] and model.config.fc_dim == 37
    data = json.loads((out / "config.json").read_text())["import"]["data"]
    assert data["kind"] == "video" and data["crop"] == [320, 640] and data["size"] == [128, 256]


def test_reference_nerv_reconstruct_reports_psnr(shared_dir, tmp_path, capsys):
    """`xinc reconstruct` on the imported directory finds the recorded ground truth (crop included)."""
    ref = shared_dir / "reference"
    out = tmp_path / "nerv"
    assert main(["import", "nerv", str(ref / "nerv_bunny30_paper_config.pth"), "--config",
                 str(ref / "nerv_bunny30_paper_config.json"), "--crop_list", "320_640", "--data_path",
                 str(shared_dir / "data" / "bunny_360p"), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["reconstruct", str(out), "--out", str(tmp_path / "rec"), "--device", "cpu"]) == 0
    psnr = json.loads((tmp_path / "rec" / "psnr.json").read_text())
    assert len(psnr["frames"]) == 30 and abs(psnr["mean_psnr_float"] - 27.14) < 0.05


def test_reference_nerv_from_flags_only(shared_dir, tmp_path):
    """The original vocabulary as flags (no JSON) gives the same model as the JSON."""
    ref = shared_dir / "reference"
    flags = {"embed": "pe_1.25_80", "fc_hw": "8_16", "dec_strds": [4, 2, 2], "ks": "0_3_3", "reduce": 1.2,
             "lower_width": 6, "modelsize": 1.0}
    a, _, rec = build_nerv_import(ref / "nerv_bunny30_paper_config.pth", flags, None, 30)
    b, _, _ = build_nerv_import(ref / "nerv_bunny30_paper_config.pth", {}, ref / "nerv_bunny30_paper_config.json",
                                None)
    assert a.config == b.config
    assert rec["architecture_sources"]["fc_dim"].startswith("weights")


@pytest.mark.slow
def test_reference_hnerv_reproduces_12_frame_psnr(shared_dir, tmp_path, capsys):
    out = tmp_path / "hnerv"
    assert main(["import", "hnerv-quant", str(shared_dir / "reference" / "hnerv_bunny_1.5M_quant_vid.pth"),
                 "--gt", str(shared_dir / "data" / "bunny_720p_every11"), "--out", str(out)]) == 0
    assert "mean 33.44" in capsys.readouterr().out
    imp = json.loads((out / "config.json").read_text())["import"]
    rep = imp["reproduced"]
    assert rep["frames"] == list(range(0, 132, 11))
    assert abs(rep["mean_psnr_db"] - 33.444) < 0.05
    assert imp["decoder_params"] == 1_488_276 and imp["data"]["crop"] == [640, 1280]
    model = load_model(out)
    c = model.config
    assert (c.height, c.width, c.num_frames) == (640, 1280, 132)
    assert c.strides == [5, 4, 4, 2, 2] and c.kernel_sizes == [1, 3, 5, 5, 5]
    assert [c.fc_dim, *c.widths] == [68, 57, 48, 40, 33, 28]
    assert tuple(model.embeddings.shape) == (132, 16, 2, 4)
    # `xinc reconstruct --gt` matches the sparse folder's files by number (frame 121 <-> 0122.png)
    rec = tmp_path / "rec"
    assert main(["reconstruct", str(out), "--out", str(rec), "--frames", "121", "--gt",
                 str(shared_dir / "data" / "bunny_720p_every11"), "--device", "cpu", "--batch", "1"]) == 0
    psnr = json.loads((rec / "psnr.json").read_text())
    assert abs(psnr["psnr_float"][0] - rep["per_frame_psnr_db"][-1]) < 1e-3
