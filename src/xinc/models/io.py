"""Model directories: `model.safetensors` + `config.json` ({"model": {...}, ...}) rebuild a model alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from xinc import __version__
from xinc.errors import XincError
from xinc.models.ffn import FFN, FFNConfig
from xinc.models.nerv import NeRV, NeRVConfig
from xinc.utils import atomic_save, read_json, to_jsonable, write_json

WEIGHTS = "model.safetensors"
CONFIG = "config.json"

Model = FFN | NeRV


def model_config_from_dict(d: dict[str, Any]) -> FFNConfig | NeRVConfig:
    """Rebuild the config dataclass from its JSON form (dispatch on 'kind')."""
    kind = d.get("kind")
    if kind == "ffn":
        return FFNConfig.from_dict(d)
    if kind in ("nerv", "hnerv"):
        return NeRVConfig.from_dict(d)
    raise XincError(f"model kind {kind!r} is unknown; expected ffn or nerv")


def build_model(config: FFNConfig | NeRVConfig, generator: torch.Generator | None = None) -> Model:
    """Instantiate the module for a config (errors in the config become XincError); a generator, when
    given, is the only source of the random initial weights."""
    try:
        return FFN(config, generator) if isinstance(config, FFNConfig) else NeRV(config, generator)
    except ValueError as e:
        raise XincError(f"invalid model configuration: {e}") from None


def check_state_dict(model: Model, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise a clear error naming the first tensor whose name or shape disagrees with the model."""
    expected = model.state_dict()
    for name, ref in expected.items():
        if name not in state:
            raise XincError(f"{source}: tensor {name!r} {tuple(ref.shape)} is missing from the weights")
        if tuple(state[name].shape) != tuple(ref.shape):
            raise XincError(
                f"{source}: tensor {name!r} has shape {tuple(state[name].shape)} but the "
                f"architecture needs {tuple(ref.shape)}; the weights do not match the config"
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        raise XincError(f"{source}: unexpected tensor {extra[0]!r} not in the architecture")


def check_finite_state(state: dict[str, torch.Tensor], source: str) -> None:
    """Refuse weights holding NaN or inf: a model with them renders NaN frames and NaN canvases."""
    for name, t in state.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise XincError(f"{source}: tensor {name!r} holds {bad} non-finite value(s) (NaN/inf) ; the weights "
                            "are corrupt or the training diverged, use another checkpoint")


def save_model(model: Model, out_dir: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write weights (safetensors) and config.json (model config plus any `extra` sections)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_save(out_dir / WEIGHTS, lambda p: save_file(state, str(p)))
    cfg_path = out_dir / CONFIG
    cfg = read_json(cfg_path) if cfg_path.exists() else {}
    cfg.update({"xinc_version": __version__, "model": to_jsonable(model.config)})
    cfg.update(to_jsonable(extra or {}))
    write_json(cfg_path, cfg)


def load_model(model_dir: str | Path, device: str | torch.device = "cpu") -> Model:
    """Load a model directory written by `xinc train` or `xinc import` (eval mode)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise XincError(f"{model_dir}: not a model directory (expected a folder from `xinc train` or `xinc import`)")
    cfg = read_json(model_dir / CONFIG)
    if "model" not in cfg:
        raise XincError(f"{model_dir / CONFIG}: no 'model' section; is this an xinc model directory?")
    model = build_model(model_config_from_dict(cfg["model"]))
    wpath = model_dir / WEIGHTS
    if not wpath.is_file():
        raise XincError(f"{wpath}: weights file not found")
    try:
        state = load_file(str(wpath))
    except Exception as e:  # safetensors raises several types for corrupt files
        raise XincError(f"{wpath}: cannot read safetensors weights ({e})") from None
    check_state_dict(model, state, str(wpath))
    check_finite_state(state, str(wpath))
    model.load_state_dict(state)
    return model.to(device).eval()


def read_model_dir_config(model_dir: str | Path) -> dict[str, Any]:
    """The full config.json of a model directory."""
    return read_json(Path(model_dir) / CONFIG)
