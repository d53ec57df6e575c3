"""The restricted unpickler: reads torch zip checkpoints and OmegaConf-laden pickles, refuses code."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import pytest
import torch

from xinc.cli.main import main
from xinc.errors import XincError
from xinc.models.importers.safe_pickle import load_checkpoint


def test_plain_checkpoint_matches_torch_load(tmp_path):
    obj = {
        "epoch": 3,
        "state_dict": collections.OrderedDict(
            a=torch.arange(6, dtype=torch.float32).reshape(2, 3), b=torch.ones(4, dtype=torch.float16)
        ),
        "view": torch.arange(10, dtype=torch.int64)[2:8:2],
        "shared": None,
        "nested": [1.5, "x", (True, None)],
    }
    obj["shared"] = obj["state_dict"]["a"]  # same storage twice
    path = tmp_path / "c.pth"
    torch.save(obj, path)
    got = load_checkpoint(path)
    ref = torch.load(path, weights_only=True)
    assert got["epoch"] == 3 and got["nested"] == [1.5, "x", (True, None)]
    for k in ("a", "b"):
        assert got["state_dict"][k].dtype == ref["state_dict"][k].dtype
        assert torch.equal(got["state_dict"][k], ref["state_dict"][k])
    assert torch.equal(got["view"], torch.tensor([2, 4, 6]))
    assert torch.equal(got["shared"], got["state_dict"]["a"])


class _Evil:
    """Pickles as os.system(<command>): what a malicious checkpoint smuggles in."""

    def __init__(self, cmd: str):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _EvalEvil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("kind", ["os.system", "builtins.eval"])
def test_malicious_global_is_refused_and_nothing_runs(tmp_path, kind):
    marker = tmp_path / "pwned"
    payload = _Evil(f"touch {marker}") if kind == "os.system" else _EvalEvil(marker)
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": payload}, path)
    with pytest.raises(XincError) as e:
        load_checkpoint(path)
    msg = str(e.value)
    assert "not on the allow-list" in msg and str(path) in msg
    assert ("system" in msg) if kind == "os.system" else ("eval" in msg)
    assert not marker.exists()


def test_malicious_checkpoint_cli_one_line_error(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": _Evil(f"touch {marker}")}, path)
    out = tmp_path / "model"
    for sub in ("xinc-ffn", "nerv", "hnerv-quant"):
        assert main(["import", sub, str(path), "--out", str(out), *(["--frames", "3"] if sub == "nerv" else [])]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "refusing to load" in err
    assert not marker.exists() and not out.exists() and not (tmp_path / "model.partial").exists()


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.pth"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(XincError, match="not a torch zip checkpoint"):
        load_checkpoint(bad)
    with pytest.raises(XincError, match="not found"):
        load_checkpoint(tmp_path / "missing.pth")
    good = tmp_path / "g.pth"
    torch.save({"w": torch.ones(1000)}, good)
    data = good.read_bytes()
    trunc = tmp_path / "t.pth"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(XincError):
        load_checkpoint(trunc)


def test_numpy_scalars_load_but_object_arrays_do_not(tmp_path):
    import numpy as np

    path = tmp_path / "np.ckpt"
    torch.save({"score": np.float64(35.5), "step": np.int64(7)}, path)
    got = load_checkpoint(path)
    assert float(got["score"]) == 35.5 and int(got["step"]) == 7
    torch.save({"arr": np.array([1.0, 2.0])}, path)  # arrays need ndarray reconstruction: not on the allow-list
    with pytest.raises(XincError, match="allow-list"):
        load_checkpoint(path)
