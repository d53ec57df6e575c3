"""Small shared helpers: devices, seeding, atomic output, JSON."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import shutil
import tempfile
from collections.abc import Iterator
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
    out = Path(out)
    return out.with_name(out.name + ".partial")


@contextlib.contextmanager
def atomic_dir(out: str | Path, *, keep_on_error: bool = False, overwrite: bool = True) -> Iterator[Path]:
    """Yield a staging folder; on success it replaces `out` in one rename, on error it is removed.

    keep_on_error=True keeps the staging folder (e.g. so training can resume from it).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise XincError(f"{out}: exists and is not a folder; choose another --out")
    if out.exists() and not overwrite:
        raise XincError(f"{out}: already exists; remove it or choose another --out")
    stage = partial_dir(out)
    stage.mkdir(parents=True, exist_ok=True)
    try:
        yield stage
    except BaseException:
        if not keep_on_error:
            shutil.rmtree(stage, ignore_errors=True)
        raise
    if out.exists():
        trash = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, trash)
        os.replace(stage, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(stage, out)


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
    """Parse '0,11,22' or '0-5' or 'all'/None into sorted unique indices in [0, n)."""
    if text is None or text == "" or text == "all":
        return list(range(n))
    out: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                a, b = part.split("-", 1)
                out.update(range(int(a), int(b) + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise XincError(f"{what} {text!r}: expected comma-separated integers or ranges like 0-5") from None
    bad = [i for i in sorted(out) if i < 0 or i >= n]
    if bad:
        raise XincError(f"{what}: index {bad[0]} is outside 0..{n - 1}")
    return sorted(out)


def parse_hw(text: str, what: str) -> tuple[int, int]:
    """Parse '128x256' (or '128_256') into (H, W) positive ints."""
    s = str(text).lower().replace("_", "x")
    try:
        h, w = (int(v) for v in s.split("x"))
    except ValueError:
        raise XincError(f"{what} {text!r}: expected HxW, e.g. 128x256") from None
    if h <= 0 or w <= 0:
        raise XincError(f"{what} {text!r}: height and width must be positive")
    return h, w
