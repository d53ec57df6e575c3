"""Dataset readers as plug-ins: one module per panoptic video dataset registers a `DatasetReader`.

A reader answers everything the rest of xinc asks of a dataset — its name (the `--dataset` choice), how to
list its clips, the layout of one clip (frame files, annotation files, segment tables), the first
annotated frame (what an FFN is fitted to), the native frame size (which decides the centre crop), and
its category table. The CLI choices, the pipeline, `xinc.data.panoptic` and the synthetic generator all
read them from here. Modules are discovered with pkgutil: a new dataset is one new module.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xinc.errors import XincError


@dataclass(frozen=True)
class DatasetReader:
    """One panoptic video dataset in its published layout."""

    name: str  # the --dataset choice, e.g. "cityscapes-vps"
    title: str  # human name, e.g. "Cityscapes-VPS (val)"
    layout: Callable[[Path, str], Any]  # (root, video id) -> xinc.data.panoptic.ClipLayout
    list_videos: Callable[[Path], list[str]]  # root -> video ids
    first_annotated: int  # 0-based clip index of the first annotated frame
    native_size: tuple[int, int]  # (H, W) of the published frames
    categories: dict  # {category id: xinc.data.categories.Category}
    clip_length: int | None = None  # frames per clip when fixed (Cityscapes-VPS: 30)


DATASETS: dict[str, DatasetReader] = {}


def register_dataset(reader: DatasetReader) -> DatasetReader:
    """Add a reader to the registry (called at import by its module)."""
    DATASETS[reader.name] = reader
    return reader


def discover() -> dict[str, DatasetReader]:
    """Import every module of xinc.data.datasets so its reader registers; return the registry."""
    import xinc.data.datasets as pkg

    for m in pkgutil.iter_modules(pkg.__path__):
        name = f"{pkg.__name__}.{m.name}"
        if not m.name.startswith("_") and name not in sys.modules:
            importlib.import_module(name)
    return DATASETS


def dataset_names() -> tuple[str, ...]:
    """The registered dataset names, in registration order."""
    return tuple(discover())


def get_dataset(name: str) -> DatasetReader:
    """The reader of dataset `name`, or a one-line error naming the known ones."""
    found = discover()
    if name not in found:
        raise XincError(f"--dataset {name!r}: unknown dataset ; choose one of {', '.join(found)}")
    return found[name]


__all__ = ["DatasetReader", "DATASETS", "register_dataset", "discover", "dataset_names", "get_dataset"]
