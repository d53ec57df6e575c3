"""Shared pieces of the importers: weight lookup with clear errors, and writing the model directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from xinc.errors import XincError
from xinc.models.io import Model, check_finite_state, check_state_dict, save_model
from xinc.outputs import owned_output


def need_tensor(state: dict[str, Any], name: str, source: str, ndim: int | None = None) -> torch.Tensor:
    """state[name] as a float32 CPU tensor, or an XincError naming the missing/odd tensor."""
    if name not in state:
        raise XincError(f"{source}: tensor {name!r} is missing; is this the right kind of checkpoint?")
    t = state[name]
    if not isinstance(t, torch.Tensor):
        raise XincError(f"{source}: entry {name!r} is not a tensor")
    if ndim is not None and t.dim() != ndim:
        raise XincError(f"{source}: tensor {name!r} has shape {tuple(t.shape)}; expected {ndim} dimensions")
    return t.detach().to(torch.float32)


def compare_shapes(expected: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor], source: str,
                   what: str) -> None:
    """Before mapping: the first original tensor whose shape disagrees with the resolved architecture."""
    for name, shape in expected.items():
        if name not in state:
            raise XincError(f"{source}: tensor {name!r} {shape} needed by {what} is missing from the checkpoint")
        got = tuple(state[name].shape)
        if got != tuple(shape):
            raise XincError(
                f"{source}: tensor {name!r} has shape {got} but {what} needs {tuple(shape)}; "
                f"the weights do not match the architecture (fix the flags/JSON or drop them to infer from the weights)"
            )


def write_imported(model: Model, state: dict[str, torch.Tensor], out: str | Path, extra: dict[str, Any],
                   source: str, *, inputs=(), overwrite: bool = False) -> Path:
    """Load `state` into `model` (shape- and finiteness-checked), then write the model directory atomically."""
    check_state_dict(model, state, source)
    check_finite_state(state, source)
    model.load_state_dict(state)
    model.eval()
    out = Path(out)
    with owned_output(out, inputs=[source, *inputs], overwrite=overwrite, kind="import") as stage:
        save_model(model, stage, extra)
    return out


def data_record(src: str | Path | None, crop: list[int] | None, size: list[int], frames: int,
                complete: bool | None = None, **extra: Any) -> dict[str, Any]:
    """The ground-truth record of config.json, in the fields `xinc train` writes (kind, src, crop, size, frames).

    kind is "video" (or "image" for one frame) when `src` exists here and holds every frame in order, so
    `xinc reconstruct DIR` finds the ground truth alone; else "external" with the path kept for reference.
    """
    local = src is not None and Path(src).exists()
    if local and complete is None:
        p = Path(src)
        complete = p.is_file() or sum(1 for q in p.iterdir() if q.suffix.lower() in (".png", ".jpg", ".jpeg")) >= frames
    kind = ("image" if frames == 1 else "video") if local and complete else "external"
    return {"kind": kind, "src": str(Path(src).resolve()) if local else (str(src) if src else None),
            "crop": list(crop) if crop else None, "size": list(size), "frames": frames, **extra}
