"""CLI: --help everywhere, tiny end-to-end train + reconstruct, and the error paths (one line, exit 2, no output)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xinc.cli.main import main
from xinc.utils import partial_dir

ROOT = Path(__file__).resolve().parents[1]
XINC = ROOT / ".venv" / "bin" / "xinc"
TINY_FFN = ["--size", "16x32", "--width", "16", "--steps", "20", "--eval-every", "10", "--device", "cpu",
            "--no-progress"]
TINY_NERV = ["--size", "16x32", "--strides", "2", "2", "--fc-dim", "6", "--epochs", "4", "--eval-every", "2",
             "--device", "cpu", "--no-progress"]


def write_frames(folder: Path, n: int, h: int = 20, w: int = 40) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:h, 0:w]
    for k in range(n):
        r = 127 + 100 * np.sin(2 * math.pi * (xx / w + k / n))
        g = 127 + 100 * np.cos(2 * math.pi * yy / h)
        b = np.full_like(r, 60 + 20 * k)
        arr = np.stack([r, g, b], -1).clip(0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{k + 1:04d}.png")
    return folder


def fails_cleanly(capsys, argv: list[str], out: Path, needle: str) -> None:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xinc: error:") and needle in err[0], err
    assert not out.exists() and not partial_dir(out).exists()


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["train", "ffn", "--help"],
                                  ["train", "nerv", "--help"], ["reconstruct", "--help"]])
def test_help_exits_zero(argv, capsys):
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "usage" in text.lower()


def test_help_texts_explain_options(capsys):
    main(["train", "ffn", "--help"])
    text = capsys.readouterr().out
    for flag in ("--image", "--steps", "--lr", "--sigma", "--activation", "--resume"):
        assert flag in text
    main(["train", "nerv", "--help"])
    text = capsys.readouterr().out
    for flag in ("--video", "--crop", "--frames", "--epochs", "--strides", "--dataset", "--modelsize"):
        assert flag in text


def test_bool_flag_spellings(capsys):
    """tyro's own `--resume` / `--no-progress`; the old `--resume True` / `--progress False` with a deprecation line."""
    from xinc.cli.train import parse_config
    from xinc.train import TrainFFNConfig

    cfg = parse_config(TrainFFNConfig, ["--resume", "--no-progress", "--steps", "1"], "xinc train ffn")
    assert (cfg.resume, cfg.progress, cfg.steps) == (True, False, 1)
    assert capsys.readouterr().err == ""
    cfg = parse_config(TrainFFNConfig, ["--resume", "False", "--progress", "false", "--overwrite", "True"], "p")
    assert (cfg.resume, cfg.progress, cfg.overwrite) == (False, False, True)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all("deprecated" in line for line in err) and "`--no-progress`" in err[1]


def test_train_ffn_and_reconstruct(tmp_path, capsys):
    src = write_frames(tmp_path / "img", 1)
    out = tmp_path / "ffn"
    assert main(["train", "ffn", "--image", str(src / "0001.png"), "--out", str(out), *TINY_FFN]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["command"].startswith("xinc train ffn") and cfg["train"]["data"]["kind"] == "image"
    frames = tmp_path / "rec"
    assert main(["reconstruct", str(out), "--out", str(frames), "--device", "cpu"]) == 0
    assert sorted(p.name for p in frames.glob("*.png")) == ["0000.png"]
    psnr = json.loads((frames / "psnr.json").read_text())
    assert psnr["mean_psnr_8bit"] == pytest.approx(metrics["best_psnr"], abs=1e-3)
    assert "PSNR" in capsys.readouterr().out


def test_train_nerv_folder_resume_flag_and_reconstruct(tmp_path, capsys):
    src = write_frames(tmp_path / "vid", 5)
    out = tmp_path / "nerv"
    argv = ["train", "nerv", "--video", str(src), "--out", str(out), "--frames", "4", "--crop", "20x36", *TINY_NERV]
    assert main(argv + ["--resume"]) == 0  # nothing to resume: starts fresh
    m = json.loads((out / "metrics.json").read_text())
    assert m["num_frames"] == 4 and m["best_psnr"] > m["initial_psnr"]
    frames = tmp_path / "rec"
    assert main(["reconstruct", str(out), "--out", str(frames), "--frames", "0,2", "--device", "cpu"]) == 0
    assert sorted(p.name for p in frames.glob("*.png")) == ["0000.png", "0002.png"]
    psnr = json.loads((frames / "psnr.json").read_text())
    assert psnr["psnr_float"] == pytest.approx([m["per_frame_psnr"][0], m["per_frame_psnr"][2]], abs=1e-4)
    assert Image.open(frames / "0002.png").size == (32, 16)
    gt = tmp_path / "rec_gt"
    assert main(["reconstruct", str(out), "--out", str(gt), "--frames", "1", "--gt", str(src), "--device", "cpu"]) == 0
    assert json.loads((gt / "psnr.json").read_text())["psnr_float"] == pytest.approx([m["per_frame_psnr"][1]], abs=1e-4)


def test_error_paths(tmp_path, capsys):
    out = tmp_path / "o"
    img = write_frames(tmp_path / "img", 1) / "0001.png"
    (tmp_path / "empty").mkdir()
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    fails_cleanly(capsys, ["train", "ffn", "--image", str(tmp_path / "missing.png"), "--out", str(out)], out,
                  "missing.png")
    fails_cleanly(capsys, ["train", "ffn", "--image", str(bad), "--out", str(out)], out, "cannot read")
    fails_cleanly(capsys, ["train", "ffn", "--image", str(img), "--out", str(out), "--steps", "0"], out, "--steps")
    fails_cleanly(capsys, ["train", "ffn", "--image", str(img), "--out", str(out), "--lr", "-1"], out, "--lr")
    fails_cleanly(capsys, ["train", "ffn", "--image", str(img), "--out", str(out), "--size", "0x4"], out, "--size")
    fails_cleanly(capsys, ["train", "ffn", "--image", str(img), "--out", str(out), "--activation", "x"], out,
                  "--activation")
    fails_cleanly(capsys, ["train", "nerv", "--video", str(tmp_path / "empty"), "--out", str(out)], out,
                  "no image frames")
    fails_cleanly(capsys, ["train", "nerv", "--video", str(img.parent), "--out", str(out), "--size", "100x200"],
                  out, "divisible")
    fails_cleanly(capsys, ["train", "nerv", "--video", str(img.parent), "--out", str(out), "--epochs", "0"], out,
                  "--epochs")
    fails_cleanly(capsys, ["train", "nerv", "--video", str(img.parent), "--out", str(out), "--frames", "3"], out,
                  "only 1")
    fails_cleanly(capsys, ["train", "nerv", "--video", "x", "--dataset", "kitti", "--root", ".", "--out", str(out)],
                  out, "--dataset")
    fails_cleanly(capsys, ["reconstruct", str(tmp_path / "nomodel"), "--out", str(out)], out, "not a model directory")
    assert main(["train", "ffn", "--image", str(img), "--out", str(out), "--steps", "abc"]) == 2  # usage error
    assert not out.exists()


def test_installed_executable_error(tmp_path):
    if not XINC.is_file():
        pytest.skip(f"{XINC} is not installed")
    out = tmp_path / "o"
    r = subprocess.run([str(XINC), "train", "ffn", "--image", str(tmp_path / "nope.png"), "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "nope.png" in lines[0]
    assert not out.exists() and not partial_dir(out).exists()


def test_interrupted_cli_run_resumes(tmp_path, monkeypatch, capsys):
    """Ctrl-C mid-run exits 130 and keeps OUT.partial; `--resume` ends with the weights of a clean run."""
    from safetensors.torch import load_file

    import xinc.train.loop as loop_mod

    src = write_frames(tmp_path / "img", 1)
    argv = ["train", "ffn", "--image", str(src / "0001.png"), *TINY_FFN]
    assert main([*argv, "--out", str(tmp_path / "clean")]) == 0
    orig = loop_mod.save_checkpoint

    def cut(*a, **k):
        orig(*a, **k)
        raise KeyboardInterrupt

    out = tmp_path / "cut"
    monkeypatch.setattr(loop_mod, "save_checkpoint", cut)
    capsys.readouterr()
    assert main([*argv, "--out", str(out)]) == 130
    assert "--resume" in capsys.readouterr().err
    assert not out.exists() and partial_dir(out).is_dir()
    monkeypatch.setattr(loop_mod, "save_checkpoint", orig)
    assert main([*argv, "--out", str(out), "--resume"]) == 0
    a, b = load_file(str(tmp_path / "clean" / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((out / "metrics.json").read_text())["resumed"]
