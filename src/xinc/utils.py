"""Small shared helpers: devices, seeding, atomic output, JSON."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xinc.errors import XincError


def resolve_device(device: str = "auto") -> torch.device:
    """Map 'auto' | 'cpu' | 'cuda[:i]' to a torch.device, with a clear error if CUDA is absent."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise XincError(f"--device {device}: CUDA is not available on this machine; use --device cpu or auto")
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise XincError(f"--device {device}: not a device name ({e}); use auto, cpu or cuda") from None


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a CPU generator for explicit use."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses, paths, tuples, numpy and torch scalars into JSON-friendly values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: to_jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(to_jsonable(obj), f, indent=2, sort_keys=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: str | Path) -> Any:
    """Read JSON with a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise XincError(f"{path}: file not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise XincError(f"{path}: not valid JSON ({e})") from None


def partial_dir(out: str | Path) -> Path:
    """Staging folder beside `out` where an unfinished run lives until it is complete."""
    from xinc.outputs import partial_dir as _partial

    return _partial(out)


def atomic_dir(out: str | Path, *, keep_on_error: bool = False, overwrite: bool = False, inputs=(),
               kind: str = "run"):
    """Thin alias of `xinc.outputs.owned_output` (keep_on_error = resume): a staged, locked, marked folder."""
    from xinc.outputs import owned_output

    return owned_output(out, inputs=inputs, overwrite=overwrite, resume=keep_on_error, kind=kind)


def atomic_save(path: str | Path, write_fn) -> None:
    """Call write_fn(tmp_path) then rename tmp_path to `path` (same folder, same suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def parse_index_list(text: str | None, n: int, what: str = "--frames") -> list[int]:
    """Parse '0,11,22' or '0-5' or 'all'/None into sorted unique indices in [0, n) (xinc.validate.index_range)."""
    from xinc.validate import index_range

    return index_range(text, n, what)


def parse_hw(text: str, what: str) -> tuple[int, int]:
    """Parse '128x256' (or '128_256') into (H, W) positive ints (xinc.validate.hw)."""
    from xinc.validate import hw

    return hw(text, what, allow_none=False)
