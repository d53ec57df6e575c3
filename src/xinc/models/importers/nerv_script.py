"""Import checkpoints of the original NeRV/HNeRV training script ({'epoch', 'state_dict', 'optimizer'})."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xinc.errors import XincError
from xinc.models.importers import original
from xinc.models.importers.common import data_record, write_imported
from xinc.models.importers.evaluate import video_psnr
from xinc.models.importers.safe_pickle import load_checkpoint, sha256_file
from xinc.models.io import check_finite_state
from xinc.models.nerv import NeRV
from xinc.utils import read_json


def read_arch_json(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(architecture_args, whole JSON) of a config in the original vocabulary (top level also accepted)."""
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise XincError(f"{path}: expected a JSON object with 'architecture_args'")
    args = doc.get("architecture_args", doc)
    if not isinstance(args, dict):
        raise XincError(f"{path}: 'architecture_args' must be an object of the original script's arguments")
    args = dict(args)
    for key in original.DATA_FIELDS:  # data options may sit beside the architecture
        if key not in args and key in doc:
            args[key] = doc[key]
    return args, doc


def script_state_dict(ckpt: Any, source: str) -> dict:
    """The model weights of an original-script checkpoint (or of a bare state_dict)."""
    if isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        sd = ckpt["state_dict"]
    elif isinstance(ckpt, dict) and any(str(k).startswith("decoder.") for k in ckpt):
        sd = ckpt
    else:
        keys = sorted(ckpt)[:5] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise XincError(f"{source}: expected {{'epoch', 'state_dict', 'optimizer'}} from the original NeRV/HNeRV "
                        f"script, found {keys}")
    return {k[len("module."):] if str(k).startswith("module.") else k: v for k, v in sd.items()}  # DDP prefix


def build_nerv_import(ckpt_path: str | Path, flags: dict[str, Any], config_json: str | Path | None,
                      frames: int | None) -> tuple[NeRV, dict, dict[str, Any]]:
    """(model with weights, xinc state dict, import record) for an original-script NeRV checkpoint."""
    ckpt_path = Path(ckpt_path)
    source = str(ckpt_path)
    json_args, doc = read_arch_json(config_json) if config_json else ({}, {})
    if frames is None and isinstance(doc.get("frames"), dict) and doc["frames"].get("count"):
        frames, frames_src = int(doc["frames"]["count"]), "json frames.count"
    else:
        frames_src = "flag" if frames is not None else None
    ckpt = load_checkpoint(ckpt_path)
    state = script_state_dict(ckpt, source)
    res = original.resolve(state, flags, json_args, source, num_frames=frames)
    res.sources["num_frames"] = frames_src or "?"
    model = NeRV(res.config)
    mapped = original.map_state(state, len(res.config.strides))
    model.load_state_dict(mapped)
    record = {
        "source": str(ckpt_path.resolve()),
        "sha256": sha256_file(ckpt_path),
        "format": "nerv-script (original NeRV/HNeRV training script: {'epoch', 'state_dict', 'optimizer'})",
        "config_json": str(Path(config_json).resolve()) if config_json else None,
        "key_map": original.KEY_MAP,
        "architecture_args": res.args,
        "architecture_sources": res.sources,
        "frames": res.config.num_frames,
        "time_code": f"frame k <-> t = k/{res.config.num_frames} (float64), PE computed by the model",
        "recovered": {"epoch": ckpt.get("epoch") if isinstance(ckpt, dict) else None},
        "data": data_record(res.data["source"], res.data["crop"], res.data["size"], res.config.num_frames,
                            frame_files="frame k <-> %04d.png with number k+1"),
    }
    return model, mapped, record


def import_nerv_checkpoint(ckpt_path: str | Path, out: str | Path, flags: dict[str, Any],
                           config_json: str | Path | None = None, frames: int | None = None,
                           gt: str | Path | None = None, *, overwrite: bool = False) -> dict[str, Any]:
    """Write an xinc model directory for an original-script checkpoint; with `gt`, also measure PSNR."""
    model, mapped, record = build_nerv_import(ckpt_path, flags, config_json, frames)
    check_finite_state(mapped, str(ckpt_path))  # before any PSNR is measured on NaN weights
    if gt is not None:
        d = record["data"]
        record["reproduced"] = video_psnr(model.eval(), gt, crop=d["crop"], eps=1e-9)
        record["data"] = {**d, **data_record(gt, d["crop"], d["size"], d["frames"])}
    write_imported(model, mapped, out, {"import": record}, str(ckpt_path), inputs=[config_json, gt],
                   overwrite=overwrite)
    return record
