"""Import the FFN released with the original XINC code (a PyTorch Lightning checkpoint) as an xinc FFN.

Original names: model.positional_encoding.B (L, 2) and model.net.{i}.linear.{weight,bias}; ours:
encoding.B and layers.{i}.{weight,bias}. The architecture comes from the weights (widths, depth,
L); the embedded OmegaConf config (read through inert stand-ins) supplies what the weights cannot
(activation, sigma, image size, seed, data path, best validation PSNR).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from xinc.errors import XincError
from xinc.models.ffn import FFN, FFNConfig
from xinc.models.importers.common import data_record, need_tensor, write_imported
from xinc.models.importers.safe_pickle import load_checkpoint, sha256_file, to_plain

_LAYER = re.compile(r"^model\.net\.(\d+)\.linear\.weight$")


def _get(d: Any, *keys: str, default: Any = None) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def _resolve_interpolations(cfg: dict) -> dict:
    """Resolve OmegaConf's relative '${..a.b}' strings (the only kind Lightning configs here use)."""

    def lookup(container: list[str], ref: str) -> Any:
        dots = len(ref) - len(ref.lstrip("."))  # '.x' = sibling, '..x' = in the parent container, 'x' = from root
        node_path = container[: len(container) - (dots - 1)] if dots else []
        node: Any = cfg
        for k in node_path + [p for p in ref.lstrip(".").split(".") if p]:
            if not isinstance(node, dict) or k not in node:
                return "${" + ref + "}"
            node = node[k]
        return node

    def walk(d: Any, path: list[str]) -> Any:
        if isinstance(d, dict):
            return {k: walk(v, path + [k]) for k, v in d.items()}
        if isinstance(d, list):
            return [walk(v, path) for v in d]
        if isinstance(d, str) and d.startswith("${") and d.endswith("}"):
            return lookup(path[:-1], d[2:-1])
        return d

    for _ in range(3):  # chains like resume -> trainer.resume
        cfg = walk(cfg, [])
    return cfg


def _best_score(ckpt: dict) -> float | None:
    for cb in (ckpt.get("callbacks") or {}).values():
        score = cb.get("best_model_score") if isinstance(cb, dict) else None
        if isinstance(score, torch.Tensor) and score.numel() == 1:
            return float(score)
        if isinstance(score, int | float):
            return float(score)
    return None


def _check_chain(weights: list[torch.Tensor], source: str) -> int:
    """Each layer's inputs are the previous layer's outputs and the hidden layers share one width; that width."""
    for i in range(1, len(weights)):
        if weights[i].shape[1] != weights[i - 1].shape[0]:
            raise XincError(f"{source}: tensor 'model.net.{i}.linear.weight' {tuple(weights[i].shape)} does not "
                            f"chain with model.net.{i - 1} ({weights[i - 1].shape[0]} outputs)")
    hidden = weights[0].shape[0]
    if any(w.shape[0] != hidden for w in weights[:-1]):
        widths = [w.shape[0] for w in weights]
        raise XincError(f"{source}: hidden layers of different widths {widths} are not supported")
    return hidden


def ffn_from_lightning(ckpt: Any, source: str) -> tuple[FFN, dict[str, torch.Tensor], dict[str, Any]]:
    """(model, our state dict, import record) from an unpickled XINC Lightning checkpoint."""
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise XincError(f"{source}: no 'state_dict' in the checkpoint; expected a PyTorch Lightning .ckpt")
    sd = ckpt["state_dict"]
    idx = sorted(int(m.group(1)) for k in sd if (m := _LAYER.match(k)))
    if not idx or idx != list(range(len(idx))):
        raise XincError(f"{source}: no model.net.<i>.linear.weight tensors (found {sorted(sd)[:4]}); not an XINC FFN")
    hp = _resolve_interpolations(to_plain(ckpt.get("hyper_parameters") or {}))
    cfg = hp.get("cfg", hp) if isinstance(hp, dict) else {}
    net, data = _get(cfg, "network", default={}) or {}, _get(cfg, "data", default={}) or {}
    pe = net.get("pos_encoding") or {}
    weights = [need_tensor(sd, f"model.net.{i}.linear.weight", source, 2) for i in idx]
    biases = [need_tensor(sd, f"model.net.{i}.linear.bias", source, 1) for i in idx]
    sources: dict[str, str] = {}
    state: dict[str, torch.Tensor] = {}
    if "model.positional_encoding.B" in sd:
        B = need_tensor(sd, "model.positional_encoding.B", source, 2)
        encoding, L, in_dim = "fourier", B.shape[0], B.shape[1]
        if weights[0].shape[1] != 2 * L:
            raise XincError(
                f"{source}: tensor 'model.net.0.linear.weight' has {weights[0].shape[1]} inputs but B "
                f"{tuple(B.shape)} gives {2 * L} Fourier features"
            )
        state["encoding.B"] = B
        sources.update(num_features="weights (B rows)", in_dim="weights (B columns)")
    else:
        encoding, L, in_dim, B = "none", None, weights[0].shape[1], None
        sources.update(in_dim="weights")
    hidden = _check_chain(weights, source)
    act = str(net.get("activation") or "relu").lower()
    act = {"siren": "sine", "sin": "sine"}.get(act, act)
    if net.get("final_act") not in (None, "none", "identity"):
        raise XincError(f"{source}: final activation {net.get('final_act')!r} is not supported (only identity)")
    shape = data.get("data_shape")
    if isinstance(shape, list) and len(shape) == 2:
        height, width = int(shape[0]), int(shape[1])
        sources["height/width"] = "embedded config data.data_shape"
    else:
        raise XincError(f"{source}: the embedded config has no data.data_shape [H, W]; cannot tell the image size")
    sigma = float(pe.get("fourier_noise_scale") or 10.0)
    sources.update(hidden="weights", layers="weights", out_dim="weights",
                   activation="embedded config network.activation" if net.get("activation") else "default relu",
                   sigma="embedded config (B is stored, so sigma is descriptive only)")
    cfg_ffn = FFNConfig(
        height=height, width=width, hidden=hidden, layers=len(weights), encoding=encoding, sigma=sigma,
        num_features=L if L != hidden else None, activation=act, w0=float(net.get("w0") or 30.0),
        w0_initial=float(net.get("w0_initial") or 30.0), in_dim=in_dim, out_dim=weights[-1].shape[0],
    )
    try:
        model = FFN(cfg_ffn)
    except ValueError as e:
        raise XincError(f"{source}: unsupported FFN configuration ({e})") from None
    for i, (w, b) in enumerate(zip(weights, biases)):
        state[f"layers.{i}.weight"], state[f"layers.{i}.bias"] = w, b
    extra_keys = sorted(k for k in sd if k.startswith("model.") and k not in {
        "model.positional_encoding.B", *(f"model.net.{i}.linear.{p}" for i in idx for p in ("weight", "bias"))})
    if extra_keys:
        raise XincError(f"{source}: unexpected tensor {extra_keys[0]!r}; this FFN variant is not supported")
    record = {
        "format": "xinc-ffn (PyTorch Lightning checkpoint of the original XINC code)",
        "key_map": {"model.positional_encoding.B": "encoding.B", "model.net.{i}.linear.*": "layers.{i}.*"},
        "architecture_sources": sources,
        "recovered": {
            "seed": _get(cfg, "common", "seed"),
            "best_val_psnr_db": _best_score(ckpt),
            "epoch": ckpt.get("epoch"),
            "global_step": ckpt.get("global_step"),
            "num_iters": _get(cfg, "trainer", "num_iters"),
            "lr": _get(cfg, "trainer", "lr"),
            "sigma": sigma,
            "lightning_version": ckpt.get("pytorch-lightning_version"),
        },
        "data": data_record(None, data.get("crop"), [height, width], 1, original_src=data.get("data_path"),
                            coord_normalize_range=data.get("coord_normalize_range"),
                            note="original_src is the training machine's path; give the image to "
                                 "`xinc reconstruct --gt`"),
        "frames": 1,
        "embedded_config": cfg,
    }
    return model, state, record


def import_xinc_ffn_checkpoint(ckpt_path: str | Path, out: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """Read the checkpoint safely and write an xinc FFN model directory; returns the import record."""
    ckpt_path = Path(ckpt_path)
    model, state, record = ffn_from_lightning(load_checkpoint(ckpt_path), str(ckpt_path))
    record = {"source": str(ckpt_path.resolve()), "sha256": sha256_file(ckpt_path), **record}
    with torch.no_grad():
        model.load_state_dict(state)
        img = model.render()
    record["render_range"] = [float(img.min()), float(img.max())]
    write_imported(model, state, out, {"import": record}, str(ckpt_path), overwrite=overwrite)
    return record
