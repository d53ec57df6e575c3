"""`xinc prune` / xinc.prune: structured removal is exact, rankings differ as they should, outputs are complete."""

from __future__ import annotations

import json

import pytest
import torch

from test_canvas import tiny_ffn, tiny_nerv
from xinc.canvas.ablation import layer_module
from xinc.cli.main import main
from xinc.models import load_model, save_model
from xinc.prune import PruneConfig, count_params, finetune, lowest, prune_models, structured, unstructured_l1


def test_structured_removal_zeroes_slices_and_bias_shares():
    m = tiny_nerv("three_blocks_s1s2s3")
    K = layer_module(m, "block2").in_channels * layer_module(m, "block2").out_channels
    rem = lowest(torch.arange(K, dtype=torch.float64), 0.25)
    assert int(rem.sum()) == round(0.25 * K) and rem[: int(rem.sum())].all()
    p = structured(m, {"block2": rem})
    conv, orig = layer_module(p, "block2"), layer_module(m, "block2")
    k = conv.kernel_size[0]
    assert count_params(m)["nonzero"] - count_params(p)["nonzero"] == int(rem.sum()) * k * k
    keep = (~rem).reshape(conv.in_channels, conv.out_channels).t()
    torch.testing.assert_close(conv.bias, orig.bias * keep.sum(1) / conv.in_channels)
    assert torch.equal(m.blocks[0].conv.weight, p.blocks[0].conv.weight)  # other layers untouched


def test_l1_unstructured_equal_sparsity_and_finetune_keeps_zeros():
    m = tiny_nerv("one_block_s3_k5")
    n = 40
    u = unstructured_l1(m, ["block1", "head"], n)
    assert count_params(m)["nonzero"] - count_params(u)["nonzero"] == n
    w = torch.cat([m.blocks[0].conv.weight.flatten(), m.head.weight.flatten()]).abs()
    cut = w.sort().values[n - 1]
    assert (u.blocks[0].conv.weight.abs() > 0).sum() + (u.head.weight.abs() > 0).sum() == (w > cut).sum()
    images = torch.rand(3, 3, m.config.height, m.config.width)
    t = finetune(u, images, [0, 1, 2], ["block1", "head"], epochs=2, lr=1e-2, seed=0)
    assert count_params(t)["nonzero"] == count_params(m)["nonzero"] - n  # zeros stayed zeros
    assert not any(name.endswith("_orig") for name, _ in t.named_parameters())


def test_prune_models_rankings_and_psnr():
    f = tiny_ffn("relu", 3)
    images = f.render().detach()[None].clamp(0, 1)
    cfg = PruneConfig(by=["contribution", "magnitude", "random"], amounts=[0.3, 0.6], layers=["layer2", "layer3"])
    res = prune_models(f, images, [0], cfg)
    assert res.baseline["psnr"] == pytest.approx(58.92, abs=0.01)  # its own output: capped at 8-bit noise
    names = [r["name"] for r in res.rows]
    assert names[:2] == ["contribution_0.3", "contribution_0.6"] and names[-1] == "l1-unstructured_0.6"
    for r in res.rows:
        assert r["psnr"] < res.baseline["psnr"] and r["nonzero"] < res.baseline["nonzero"]
        if r["method"] != "l1-unstructured":
            assert r["removed_neurons"] == {"layer2": round(0.3 * 7) if r["amount"] == 0.3 else round(0.6 * 7),
                                            "layer3": round(r["amount"] * 7)}
    equal = {(r["method"], r["amount"]): r["nonzero"] for r in res.rows}
    assert equal[("l1-unstructured", 0.3)] == equal[("contribution", 0.3)]


def test_cli_prune_writes_models_results_and_figure(tmp_path, capsys):
    m = tiny_nerv("two_blocks_s2s1_table")
    save_model(m, tmp_path / "nerv")
    out = tmp_path / "pruned"
    rc = main(["prune", str(tmp_path / "nerv"), "--out", str(out), "--amount", "0.2,0.5", "--finetune-epochs", "1",
               "--by", "contribution,random", "--layers", "block2,head", "--rank-frames", "0,2"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert {r["name"] for r in res["runs"]} == {"contribution_0.2", "contribution_0.5", "random_0.2", "random_0.5",
                                                "l1-unstructured_0.2", "l1-unstructured_0.5"}
    assert all("psnr_finetuned" in r for r in res["runs"])
    assert "reconstruction" in res["ground_truth"]
    p = load_model(out / "models" / "contribution_0.5")
    assert count_params(p)["nonzero"] == next(r["nonzero"] for r in res["runs"] if r["name"] == "contribution_0.5")
    assert (out / "figures" / "prune" / "psnr_vs_params.png").is_file() and (out / "results.csv").is_file()
    cfg = json.loads((out / "config.json").read_text())["prune"]
    assert cfg["amounts"] == [0.2, 0.5] and cfg["frames"] == [0, 2]  # the ranking's frames (--rank-frames)
    assert "baseline: PSNR" in capsys.readouterr().out


def test_cli_prune_refuses_foreign_or_input_outputs(tmp_path, capsys):
    save_model(tiny_nerv("one_block_s3_k5"), tmp_path / "nerv")
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    for out in (foreign, tmp_path / "nerv"):
        rc = main(["prune", str(tmp_path / "nerv"), "--out", str(out), "--overwrite"])
        assert rc == 2 and capsys.readouterr().err.startswith("xinc: error:")
    assert (foreign / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("args,msg", [(["--amount", "1.5"], "--amount"), (["--by", "size"], "--by"),
                                      (["--layers", "block9"], "--layers"), (["--rank-frames", "7"], "--rank-frames")])
def test_cli_prune_bad_input_is_one_line(tmp_path, capsys, args, msg):
    save_model(tiny_nerv("one_block_s3_k5"), tmp_path / "nerv")
    rc = main(["prune", str(tmp_path / "nerv"), "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("xinc: error:") and msg in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
