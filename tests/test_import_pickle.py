"""The restricted unpickler: reads torch zip checkpoints and OmegaConf-laden pickles, refuses code."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from xinc.cli.main import main
from xinc.errors import XincError
from xinc.models.importers.safe_pickle import Recorded, load_checkpoint, to_plain


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


def _fake_omegaconf() -> dict[str, types.ModuleType]:
    """Modules named like OmegaConf's with plain classes, so a test can pickle what Lightning pickles."""
    mods = {}
    for modname, names in {"omegaconf": [], "omegaconf.base": ["Metadata", "ContainerMetadata"],
                           "omegaconf.dictconfig": ["DictConfig"], "omegaconf.listconfig": ["ListConfig"],
                           "omegaconf.nodes": ["AnyNode"]}.items():
        m = types.ModuleType(modname)
        for n in names:
            cls = type(n, (), {"__module__": modname, "__qualname__": n})
            setattr(m, n, cls)
        mods[modname] = m
    return mods


def omegaconf_pickle(tmp_path: Path, content: dict) -> Path:
    """Save `content` wrapped in fake DictConfig/ListConfig/AnyNode objects (state like OmegaConf's)."""
    mods = _fake_omegaconf()
    saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    try:
        def wrap(v, parent=None):
            if isinstance(v, dict):
                node = mods["omegaconf.dictconfig"].DictConfig()
                node.__dict__.update(_metadata=mods["omegaconf.base"].ContainerMetadata(), _parent=parent)
                node._content = {k: wrap(x, node) for k, x in v.items()}
                return node
            if isinstance(v, list):
                node = mods["omegaconf.listconfig"].ListConfig()
                node.__dict__.update(_metadata=mods["omegaconf.base"].ContainerMetadata(), _parent=parent)
                node._content = [wrap(x, node) for x in v]
                return node
            node = mods["omegaconf.nodes"].AnyNode()
            node.__dict__.update(_metadata=mods["omegaconf.base"].Metadata(), _parent=parent, _val=v)
            return node

        path = tmp_path / "omega.ckpt"
        torch.save({"hyper_parameters": {"cfg": wrap(content)}, "w": torch.ones(3)}, path)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return path


def test_omegaconf_objects_become_inert_stand_ins(tmp_path):
    content = {"network": {"layer_size": 8, "acts": ["relu", None]}, "seed": 7, "ref": "${..network.layer_size}"}
    path = omegaconf_pickle(tmp_path, content)
    assert "omegaconf" not in sys.modules or not hasattr(sys.modules["omegaconf"], "OmegaConf")
    ck = load_checkpoint(path)
    assert isinstance(ck["hyper_parameters"]["cfg"], Recorded)
    assert to_plain(ck["hyper_parameters"]["cfg"]) == content
    assert torch.equal(ck["w"], torch.ones(3))


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


def test_loader_does_not_import_omegaconf(tmp_path):
    """A fresh interpreter loads the OmegaConf pickle without omegaconf importable (blocked on purpose)."""
    path = omegaconf_pickle(tmp_path, {"a": 1})
    code = (
        "import sys; sys.modules['omegaconf'] = None\n"
        "from xinc.models.importers.safe_pickle import load_checkpoint, to_plain\n"
        f"ck = load_checkpoint({str(path)!r}); print(to_plain(ck['hyper_parameters']['cfg']))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "{'a': 1}"
