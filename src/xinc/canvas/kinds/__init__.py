"""Layer-local transfers of the generic canvas engine, one module per operation kind (a registry).

A kind says how a neuron's contribution travels through one operation downstream of the explained layer, in
both modes: `linear` (the operation linearised at the traced point; its own constant term split over the
neurons via `offset`) and `paper` (the paper's stand-in). Every module of this package is imported on first
use (pkgutil, no hidden list); adding a kind = one module with a `@register_kind` class + its test entry in
tests/test_any_inr.py. See docs/howto-add-layer-kind.md.
"""

from __future__ import annotations

import importlib
import pkgutil

from xinc.canvas.kinds.base import KINDS, Kind, Op, register_kind

_LOADED = False


def load_kinds() -> dict[str, Kind]:
    """Import every kind module of this package once; return the registry {name: Kind}."""
    global _LOADED
    if not _LOADED:
        for info in pkgutil.iter_modules(__path__):
            if not info.name.startswith("_") and info.name != "base":
                importlib.import_module(f"{__name__}.{info.name}")
        _LOADED = True
    return KINDS


def find_kind(op: Op) -> Kind | None:
    """The registered kind that handles `op` (first match in registration order), or None."""
    for kind in load_kinds().values():
        if kind.matches(op):
            return kind
    return None


__all__ = ["KINDS", "Kind", "Op", "find_kind", "load_kinds", "register_kind"]
