"""Import HNeRV's quantised video checkpoint: {'embed': {quant,min,scale}, 'model': {name: {quant,min,scale}}}.

Dequantised as min + scale * quant (broadcast, in float32: min/scale mix float16 and float32). The
decoder is inferred from the weights (strides from conv out = width x stride^2, kernel sizes from
the kernels); the 132 frame embeddings are kept as the model's table so frame k decodes from its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from xinc.errors import XincError
from xinc.models.importers import original
from xinc.models.importers.common import data_record, write_imported
from xinc.models.importers.evaluate import video_psnr
from xinc.models.importers.safe_pickle import load_checkpoint, sha256_file
from xinc.models.io import check_finite_state
from xinc.models.nerv import NeRV, nerv_param_count

# HNeRV's released bunny videos: 1280x720 frames centre-cropped to rows 40..679 (crop_list 640_1280)
DEFAULT_CROP = [640, 1280]


def dequantize(entry: Any, name: str, source: str) -> torch.Tensor:
    """min + scale * quant in float32 (broadcast), with a clear error for malformed entries."""
    if not isinstance(entry, dict) or not {"quant", "min", "scale"} <= set(entry):
        raise XincError(f"{source}: entry {name!r} lacks quant/min/scale; not an HNeRV quantised checkpoint")
    q, lo, sc = (entry[k] for k in ("quant", "min", "scale"))
    if not all(isinstance(t, torch.Tensor) for t in (q, lo, sc)):
        raise XincError(f"{source}: entry {name!r}: quant/min/scale must be tensors")
    try:
        return lo.to(torch.float32) + sc.to(torch.float32) * q.to(torch.float32)
    except RuntimeError:
        raise XincError(f"{source}: entry {name!r}: min {tuple(lo.shape)} / scale {tuple(sc.shape)} do not broadcast "
                        f"against quant {tuple(q.shape)}") from None


def build_hnerv_import(ckpt_path: str | Path, flags: dict[str, Any] | None = None,
                       frames: int | None = None) -> tuple[NeRV, dict, dict[str, Any]]:
    """(model, xinc state dict, import record) for an HNeRV quantised video checkpoint."""
    ckpt_path = Path(ckpt_path)
    source = str(ckpt_path)
    ckpt = load_checkpoint(ckpt_path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict) or "embed" not in ckpt:
        raise XincError(f"{source}: expected {{'embed': {{quant, min, scale}}, 'model': {{name: ...}}}} "
                        f"(HNeRV quant_vid checkpoint)")
    emb = dequantize(ckpt["embed"], "embed", source)
    if emb.dim() != 4:
        raise XincError(f"{source}: embeddings have shape {tuple(emb.shape)}; expected (T, C, h, w)")
    state = {name: dequantize(e, name, source) for name, e in ckpt["model"].items()}
    T = emb.shape[0]
    if frames is not None and frames != T:
        raise XincError(f"{source}: --frames {frames} but the checkpoint stores {T} frame embeddings")
    flags = dict(flags or {})
    res = original.resolve(state, flags, {}, source, num_frames=T, table_shape=tuple(emb.shape[1:]))
    res.sources["num_frames"] = "embedding table rows"
    model = NeRV(res.config)
    mapped = original.map_state(state, len(res.config.strides))
    mapped["embeddings"] = emb.contiguous()
    model.load_state_dict(mapped)
    crop = res.data["crop"] or DEFAULT_CROP
    record = {
        "source": str(ckpt_path.resolve()),
        "sha256": sha256_file(ckpt_path),
        "format": "hnerv-quant (HNeRV quantised video checkpoint; dequantised min + scale * quant in float32)",
        "key_map": {**original.KEY_MAP, "embed": "embeddings"},
        "architecture_args": res.args,
        "architecture_sources": res.sources,
        "decoder_params": nerv_param_count(res.config),
        "frames": T,
        "time_code": f"frame k <-> stored embedding k (t = k/{T})",
        "data": data_record(res.data.get("source"), crop, [res.config.height, res.config.width], T,
                            crop_note="HNeRV bunny: 1280x720 frames centre-cropped to rows 40..679, no resize",
                            frame_files="frame k <-> %04d.png with number k+1"),
    }
    return model, mapped, record


def import_hnerv_quant_checkpoint(ckpt_path: str | Path, out: str | Path, flags: dict[str, Any] | None = None,
                                  frames: int | None = None, gt: str | Path | None = None, *,
                                  overwrite: bool = False) -> dict[str, Any]:
    """Write an xinc model directory for the HNeRV checkpoint; with `gt`, also measure PSNR."""
    model, mapped, record = build_hnerv_import(ckpt_path, flags, frames)
    check_finite_state(mapped, str(ckpt_path))  # before any PSNR is measured on NaN weights
    if gt is not None:
        record["reproduced"] = video_psnr(model.eval(), gt, crop=record["data"]["crop"], eps=0.0)
        record["data"] = {**record["data"], **data_record(gt, record["data"]["crop"], record["data"]["size"],
                                                          record["frames"])}
    write_imported(model, mapped, out, {"import": record}, str(ckpt_path), inputs=[gt], overwrite=overwrite)
    return record
