"""`xinc canvas --model module:factory`: the docs' copy-pasteable example (docs/any-model.md) runs and stores the
generic canvas."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from xinc.canvas import explain
from xinc.canvas.store import open_store
from xinc.cli.main import main

README = Path(__file__).resolve().parents[1] / "docs" / "any-model.md"  # the example lives in the docs site


def readme_example() -> tuple[str, str, list[str]]:
    """(my_siren.py source, the python -c line, the xinc argv) of the README's any-INR example."""
    block = re.search(r"<!-- any-inr-example -->\n```bash\n(.*?)```", README.read_text(), re.S).group(1)
    source = re.search(r"cat > my_siren.py <<'EOF'\n(.*?)\nEOF\n", block, re.S).group(1)
    py = next(line for line in block.splitlines() if line.startswith("python -c"))
    cli = next(line for line in block.splitlines() if line.startswith("xinc canvas"))
    return source + "\n", py, shlex.split(cli)[1:]


def test_readme_foreign_model_example_runs(tmp_path, monkeypatch):
    source, py, argv = readme_example()
    (tmp_path / "my_siren.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    subprocess.run([sys.executable, *shlex.split(py)[1:]], check=True, cwd=tmp_path)
    assert main(argv + ["--no-progress"]) == 0
    store = open_store(tmp_path / "siren_canvas")
    assert store.attrs["layers"] == ["net.1", "out"]
    cfg = json.loads((tmp_path / "siren_canvas" / "config.json").read_text())
    assert cfg["model"]["kind"] == "foreign" and len(cfg["model"]["weights_sha256"]) == 64
    # the stored maps equal the Python API's canvas of the same model and weights
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_siren
    from safetensors.torch import load_file

    model = my_siren.build()
    model.load_state_dict(load_file(str(tmp_path / "siren.safetensors")))
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 32), torch.linspace(-1, 1, 48), indexing="ij")
    cv = explain(model, torch.stack([ys, xs], -1), layer="out", mode="linear")
    stored = np.asarray(store["out"]["maps"][0])
    np.testing.assert_allclose(stored, cv.maps.numpy(), rtol=1e-5, atol=1e-6)
    assert store["out"].attrs["residual"]["0"]["gap_rel"] < 1e-5  # the last layer is exact
    assert (tmp_path / "siren_canvas" / "figures" / "out_top.png").is_file()


@pytest.mark.parametrize("extra, text", [
    (["--model", "nosuchmodule:build", "--grid", "4x4"], "cannot import nosuchmodule"),
    (["--model", "my_siren:nothing", "--grid", "4x4"], "no callable 'nothing'"),
    (["--model", "my_siren:build"], "exactly one of --grid"),
    (["--model", "my_siren:build", "--grid", "4x4", "--weights", "missing.safetensors"], "not found"),
    (["--model", "my_siren:build", "--grid", "4x4", "--layers", "net.9"], "choose from net.0"),
])
def test_foreign_model_errors_are_one_line(tmp_path, monkeypatch, capsys, extra, text):
    source, _, _ = readme_example()
    (tmp_path / "my_siren.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    assert main(["canvas", "--out", str(tmp_path / "o"), "--no-progress", *extra]) == 2
    err = capsys.readouterr().err
    assert text in err and err.startswith("xinc: error:") and "Traceback" not in err
    assert not (tmp_path / "o").exists()


DECODER = '''
import torch
from torch import nn
import torch.nn.functional as F


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(4, 8, 3, padding=1)
        self.up = nn.Conv2d(2, 6, 3, padding=1)
        self.head = nn.Conv2d(6, 3, 1)

    def forward(self, emb):
        h = F.gelu(F.pixel_shuffle(self.stem(emb), 2))
        h = F.interpolate(torch.relu(self.up(h)), scale_factor=2, mode="bilinear")
        return torch.sigmoid(self.head(h))


def build():
    return Decoder()
'''


def test_foreign_decoder_with_inputs_file_and_output_module(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    (tmp_path / "dec.py").write_text(DECODER)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import dec

    torch.manual_seed(0)
    model = dec.build().eval()
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    emb = torch.randn(1, 4, 3, 5)
    save_file({"input0": emb}, str(tmp_path / "x.safetensors"))
    argv = ["canvas", "--model", "dec:build", "--weights", "w.safetensors", "--inputs", "x.safetensors",
            "--output", "head", "--mode", "paper", "--out", "o", "--no-progress", "--no-maps"]
    assert main(argv) == 0
    store = open_store(tmp_path / "o")
    assert store.attrs["layers"] == ["stem", "up", "head"]  # every Linear/Conv2d by default
    cv = explain(model, emb, layer="up", mode="paper", output="head")
    np.testing.assert_allclose(np.asarray(store["up"]["heat"][0]), cv.maps.abs().sum(0).numpy(), rtol=1e-4,
                               atol=1e-6)
    assert (tmp_path / "o" / "figures" / "stem_top.png").is_file()  # recomputed top neurons (no maps stored)


def test_analyze_foreign_model_runs_label_free_analyses(tmp_path, monkeypatch):
    source, py, _ = readme_example()
    (tmp_path / "my_siren.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    subprocess.run([sys.executable, *shlex.split(py)[1:]], check=True, cwd=tmp_path)
    argv = ["analyze", "--model", "my_siren:build", "--weights", "siren.safetensors", "--grid", "16x24",
            "--layers", "out", "--analyses", "a1", "--mode", "linear", "--out", "run", "--no-progress"]
    assert main(argv) == 0
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["model"]["kind"] == "foreign" and "a1" in res
    assert res["canvas"]["out"]["rule"] == "generic-linear" and res["canvas"]["out"]["exact"]
