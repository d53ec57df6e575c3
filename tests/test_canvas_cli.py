"""`xinc canvas`: the zarr store is readable, equals the in-memory canvas, resumes, and fails cleanly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import xinc.canvas.write as cli_canvas
from test_canvas import tiny_ffn, tiny_nerv
from xinc.canvas import compute_canvas
from xinc.canvas.store import open_store, read_canvas
from xinc.cli.main import main
from xinc.errors import XincError
from xinc.models import save_model


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    nerv, ffn = tiny_nerv("three_blocks_s1s2s3"), tiny_ffn("relu", 3)
    save_model(nerv, root / "nerv")
    save_model(ffn, root / "ffn")
    return root, nerv, ffn


def test_cli_writes_readable_store_and_grid(model_dirs, tmp_path):
    root, nerv, _ = model_dirs
    out = tmp_path / "out"
    rc = main(["canvas", str(root / "nerv"), "--layers", "head,block2", "--frames", "0,2", "--out", str(out),
               "--chunk-neurons", "7", "--no-progress", "--top", "4"])
    assert rc == 0
    assert not (tmp_path / "out.partial").exists()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["layers"] == ["head", "block2"] and cfg["frames"] == [0, 2] and cfg["mode"] == "paper"
    store = open_store(out)
    assert store.attrs["layers"] == ["head", "block2"]
    assert store["block2"].attrs["neuron_index"].startswith("k = c_in*")
    for layer in ("head", "block2"):
        grp = store[layer]
        assert sorted(grp.attrs["frames_done"]) == [0, 2]
        assert grp["maps"].dtype == np.float32 and grp["maps"].chunks[1] == 1
        for f in (0, 2):
            ref = compute_canvas(nerv, layer, f)
            got = read_canvas(out, layer, f)
            torch.testing.assert_close(got.maps, ref.maps, rtol=1e-5, atol=1e-6 * ref.maps.abs().max().item())
            assert got.exact == ref.exact and got.rule == ref.rule and got.residual.keys() == ref.residual.keys()
            slot = [0, 2].index(f)
            torch.testing.assert_close(torch.from_numpy(grp["heat"][slot]), ref.heat(), rtol=1e-5, atol=1e-6)
        assert (out / "figures" / f"{layer}_top.png").is_file()
    from PIL import Image

    assert Image.open(out / "figures" / "block2_top.png").size[0] > 50


def test_cli_reductions_only_store(model_dirs, tmp_path):
    """--maps False: heat and totals equal those of the full canvas, no maps array, the grid is still drawn
    (its few maps recomputed), and reading maps back fails with a clear message."""
    root, nerv, _ = model_dirs
    out = tmp_path / "red"
    rc = main(["canvas", str(root / "nerv"), "--layers", "head,block1,block3", "--frames", "0,2", "--out", str(out),
               "--no-maps", "--no-progress", "--top", "3"])
    assert rc == 0
    assert json.loads((out / "config.json").read_text())["maps"] is False
    store = open_store(out)
    for layer in ("head", "block1", "block3"):
        grp = store[layer]
        assert "maps" not in grp and sorted(grp.attrs["frames_done"]) == [0, 2]
        for slot, f in enumerate((0, 2)):
            ref = compute_canvas(nerv, layer, f)
            torch.testing.assert_close(torch.from_numpy(grp["heat"][slot]), ref.heat(), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(torch.from_numpy(grp["totals"][slot]), ref.totals(), rtol=1e-5, atol=1e-6)
            assert grp.attrs["residual"][str(f)].keys() == ref.residual.keys()
        assert (out / "figures" / f"{layer}_top.png").is_file()
    with pytest.raises(XincError, match="without maps"):
        read_canvas(out, "block1", 0)


def test_cli_ffn_float16_per_channel_all_layers(model_dirs, tmp_path):
    root, _, ffn = model_dirs
    out = tmp_path / "o16"
    assert main(["canvas", str(root / "ffn"), "--out", str(out), "--dtype", "float16", "--per-channel",
                 "--no-progress"]) == 0
    store = open_store(out)
    assert store.attrs["layers"] == ["layer1", "layer2", "layer3"]
    arr = store["layer3"]["maps"]
    assert arr.dtype == np.float16 and arr.shape == (1, 7, 3, 6, 10)
    ref = compute_canvas(ffn, "layer3", per_channel=True).maps
    torch.testing.assert_close(torch.from_numpy(arr[0].astype(np.float32)), ref, rtol=2e-3, atol=2e-3)


def test_cli_resumes_after_interruption(model_dirs, tmp_path, monkeypatch):
    root, nerv, _ = model_dirs
    out = tmp_path / "res"
    argv = ["canvas", str(root / "nerv"), "--layers", "block3", "--out", str(out), "--no-progress"]
    real, calls = cli_canvas.stream_canvas, []

    def flaky(model, layer, frames, *a, **kw):
        calls.append(frames[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(model, layer, frames, *a, **kw)

    monkeypatch.setattr(cli_canvas, "stream_canvas", flaky)
    assert main(argv) == 130
    assert not out.exists() and (tmp_path / "res.partial").is_dir()  # nothing half-written at OUT
    calls.clear()
    monkeypatch.setattr(cli_canvas, "stream_canvas", lambda *a, **kw: (calls.append(a[2][0]), real(*a, **kw))[1])
    assert main(argv) == 0
    assert calls == [1, 2]  # frame 0 was complete and kept
    for f in range(3):
        ref = compute_canvas(nerv, "block3", f).maps
        torch.testing.assert_close(read_canvas(out, "block3", f).maps, ref, rtol=1e-5, atol=1e-7)


def test_cli_errors_exit_2(model_dirs, tmp_path, capsys):
    root, _, _ = model_dirs
    assert main(["canvas", str(root / "nerv"), "--layers", "block9", "--out", str(tmp_path / "a")]) == 2
    assert "block9" in capsys.readouterr().err
    assert main(["canvas", str(root / "nerv"), "--frames", "5", "--out", str(tmp_path / "b")]) == 2
    assert "outside" in capsys.readouterr().err
    assert main(["canvas", str(root / "ffn"), "--frames", "1", "--out", str(tmp_path / "c")]) == 2
    bad = tmp_path / "bad"
    save_model(tiny_nerv("one_block_s3_k5"), bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["model"]["widths"] = [5]  # the weights have 4 channels
    (bad / "config.json").write_text(json.dumps(cfg))
    assert main(["canvas", str(bad), "--out", str(tmp_path / "d")]) == 2
    assert "do not match" in capsys.readouterr().err
    for name in "abcd":
        assert not (tmp_path / name).exists() and not (tmp_path / f"{name}.partial").exists()
    with pytest.raises(XincError, match="not a canvas store"):
        open_store(tmp_path)


def test_cli_resumes_after_sigkill(model_dirs, tmp_path, monkeypatch):
    """A run killed (SIGKILL, no clean-up) after its first frame: the re-run takes over the stale lock, keeps the
    finished frame and computes only the others; the result equals an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root, nerv, _ = model_dirs
    out = tmp_path / "killed"
    argv = ["canvas", str(root / "nerv"), "--layers", "block3", "--out", str(out), "--no-progress"]
    slow = ("import sys, time; import xinc.canvas.write as c; real = c.stream_canvas\n"
            "def slow(m, layer, frames, *a, **k):\n"
            "    if frames[0] > 0: time.sleep(60)  # frame 0 finishes at once, the kill lands during frame 1\n"
            "    return real(m, layer, frames, *a, **k)\n"
            "c.stream_canvas = slow\nfrom xinc.cli.main import main\nsys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.Popen([sys.executable, "-c", slow, *argv], env=dict(os.environ))
    layer_meta = tmp_path / "killed.partial" / "canvas.zarr" / "block3" / "zarr.json"
    deadline = time.time() + 120
    try:
        while time.time() < deadline:
            try:
                if json.loads(layer_meta.read_text())["attributes"].get("frames_done"):
                    break
            except (OSError, ValueError, KeyError):
                pass
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert not out.exists() and (tmp_path / "killed.lock").exists()  # killed: stage and stale lock left behind
    calls = []
    real = cli_canvas.stream_canvas
    monkeypatch.setattr(cli_canvas, "stream_canvas", lambda *a, **kw: (calls.append(a[2][0]), real(*a, **kw))[1])
    assert main(argv) == 0
    assert calls == [1, 2]
    for f in range(3):
        ref = compute_canvas(nerv, "block3", f).maps
        torch.testing.assert_close(read_canvas(out, "block3", f).maps, ref, rtol=1e-5, atol=1e-7)
