"""`xinc import xinc-ffn`: Lightning checkpoints with OmegaConf objects, read without OmegaConf or code."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from xinc.cli.main import main
from xinc.errors import XincError
from xinc.models import FFN, FFNConfig, load_model
from xinc.models.importers import import_xinc_ffn_checkpoint
from xinc.models.importers.safe_pickle import Recorded, load_checkpoint, to_plain


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


def omegaconf_pickle(tmp_path: Path, content: dict, extra: dict | None = None) -> Path:
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
        torch.save({"hyper_parameters": {"cfg": wrap(content)}, "w": torch.ones(3), **(extra or {})}, path)
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


def _lightning_ffn(tmp_path: Path, model: FFN, seed: int = 11) -> Path:
    """A checkpoint shaped like the XINC release: model.* keys, callbacks, OmegaConf hyper-parameters."""
    sd = {"model.positional_encoding.B": model.encoding.B.clone()}
    for i, lin in enumerate(model.layers):
        sd[f"model.net.{i}.linear.weight"] = lin.weight.detach().clone()
        sd[f"model.net.{i}.linear.bias"] = lin.bias.detach().clone()
    cfg = {"network": {"model_name": "ffn", "layer_size": 8, "num_layers": 3, "activation": "relu", "final_act": None,
                       "pos_encoding": {"type": "fourier", "fourier_mapping_size": "${..layer_size}",
                                        "fourier_noise_scale": 10.0}},
           "data": {"data_path": "img.png", "data_shape": [6, 10], "crop": None},
           "trainer": {"num_iters": 5, "lr": 0.01}, "common": {"seed": seed}}
    score = torch.tensor(31.5, dtype=torch.float64)
    callbacks = {"ModelCheckpoint{'monitor': 'val_psnr'}": {"best_model_score": score}}
    return omegaconf_pickle(tmp_path, cfg, {"state_dict": sd, "callbacks": callbacks, "epoch": 4})


def test_synthetic_lightning_ffn_import(tmp_path):
    torch.manual_seed(0)
    model = FFN(FFNConfig(height=6, width=10, hidden=8, layers=3)).eval()
    path = _lightning_ffn(tmp_path, model)
    out = tmp_path / "ffn"
    rec = import_xinc_ffn_checkpoint(path, out)
    loaded = load_model(out)
    with torch.no_grad():
        assert torch.equal(loaded.render(), model.render())
    assert rec["recovered"]["seed"] == 11 and rec["recovered"]["best_val_psnr_db"] == 31.5
    assert rec["embedded_config"]["network"]["pos_encoding"]["fourier_mapping_size"] == 8  # interpolation resolved
    assert rec["data"]["size"] == [6, 10] and rec["data"]["original_src"] == "img.png"


def test_ffn_shape_mismatch_names_tensor(tmp_path):
    torch.manual_seed(0)
    model = FFN(FFNConfig(height=6, width=10, hidden=8, layers=3, num_features=5)).eval()
    path = _lightning_ffn(tmp_path, model)
    ck = load_checkpoint(path)
    sd = ck["state_dict"]
    sd["model.net.1.linear.weight"] = torch.zeros(8, 7)
    from xinc.models.importers import ffn_from_lightning

    with pytest.raises(XincError, match="model.net.1.linear.weight"):
        ffn_from_lightning(ck, "x.ckpt")


# ------------------------------------------------------------------ the released checkpoint


def test_reference_ffn(shared_dir, tmp_path, capsys):
    ckpt = shared_dir / "reference" / "xinc_ffn_0005" / "best_model.ckpt"
    out = tmp_path / "ffn"
    assert main(["import", "xinc-ffn", str(ckpt), "--out", str(out)]) == 0
    assert "seed 5817" in capsys.readouterr().out
    model = load_model(out)
    c = model.config
    assert (c.hidden, c.layers, c.num_features or c.hidden, c.height, c.width, c.activation) == (
        104, 3, 104, 128, 256, "relu")
    assert tuple(model.encoding.B.shape) == (104, 2)
    assert sum(p.numel() for p in model.parameters()) == 32_971
    with torch.no_grad():
        img = model.render()
    assert abs(float(img.min()) - 0.014) < 2e-3 and abs(float(img.max()) - 1.058) < 2e-3
    imp = json.loads((out / "config.json").read_text())["import"]
    assert imp["recovered"]["seed"] == 5817 and abs(imp["recovered"]["best_val_psnr_db"] - 35.95) < 0.01
    assert imp["data"]["original_src"].endswith("frankfurt_000000_001736_leftImg8bit.png")
    assert imp["recovered"]["sigma"] == 10.0
    assert main(["reconstruct", str(out), "--out", str(tmp_path / "rec"), "--device", "cpu"]) == 0
    assert (tmp_path / "rec" / "0000.png").is_file()  # no ground truth here (Cityscapes needs a login)
