"""Field types our config dataclasses share, so tyro parses them the way users write them.

`HW` is an (H, W) tuple written `128x256` on the command line; `OptionalHW` also takes `none`. Range
checks (positive sizes) stay in the configs' validation (`xinc.validate.hw`), which names the flag.
`flag_names(cls)` maps a config's field names to its command-line names (`tyro.conf.arg(name=...)`).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Annotated

import tyro


def _hw_from_text(args: list[str]) -> tuple[int, int] | None:
    """'128x256' (or '128_256') -> (128, 256); 'none' -> None. Unparsable text is a usage error."""
    text = args[0].strip().lower()
    if text in ("", "none"):
        return None
    h, sep, w = text.replace("_", "x").partition("x")
    try:
        return int(h), int(w)
    except ValueError:
        raise ValueError(f"{args[0]!r}: expected HxW, e.g. 128x256") from None


def _hw_to_text(value: tuple[int, int] | None) -> list[str]:
    return ["none" if value is None else f"{value[0]}x{value[1]}"]


_HW_SPEC = tyro.constructors.PrimitiveConstructorSpec(
    nargs=1, metavar="HxW", instance_from_str=_hw_from_text,
    is_instance=lambda v: v is None or (isinstance(v, tuple | list) and len(v) == 2), str_from_instance=_hw_to_text,
)

HW = Annotated[tuple[int, int], _HW_SPEC]
"""(H, W) in pixels; `--size 128x256` on the command line."""
OptionalHW = Annotated[tuple[int, int] | None, _HW_SPEC]
"""(H, W) or None; `--crop 320x640` or `--crop none`."""


def flag_names(cls: type) -> dict[str, str]:
    """{field name: option name} of a config dataclass (`hidden` -> `width` where a field is renamed for tyro)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out = {}
    for f in dataclasses.fields(cls):
        name = f.name
        for meta in getattr(hints.get(f.name), "__metadata__", ()):
            if getattr(meta, "name", None) and type(meta).__module__.startswith("tyro"):
                name = meta.name
        out[f.name] = name
    return out
