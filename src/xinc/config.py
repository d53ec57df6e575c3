"""Helpers for the library's config dataclasses (the ones `xinc <command>` parses with tyro).

A command's config is declared once, next to the function that runs it (e.g. `xinc.canvas.CanvasConfig` and
`xinc.canvas.run_canvas`). The pipeline derives each step's config from those same dataclasses with
`with_options` (typed, unknown keys refused) and records `as_json(cfg)` in the step's output.
"""

from __future__ import annotations

import dataclasses
import shlex
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from xinc.errors import XincError
from xinc.fields import flag_names as option_names  # {field: option name} (`hidden` -> `width`)

T = TypeVar("T")


class _Repeatable:
    """Marker of a list option whose repeated flags add up (`--option a --option b` = `--option a b`): lists of
    independent items. Other list options (architecture vectors such as `--strides`) keep the last occurrence,
    so an appended flag overrides. `xinc.cli.common.merge_repeated` reads it."""

    def __repr__(self) -> str:
        return "REPEATABLE"


REPEATABLE = _Repeatable()


def as_json(cfg: Any) -> dict[str, Any]:
    """The resolved config as JSON-able values (paths as strings, tuples as lists)."""
    return _plain(dataclasses.asdict(cfg))


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, Path):
        return str(v)
    return v


def _unwrap(tp: Any) -> Any:
    """Strip Annotated[...] (tyro markers) from a type hint."""
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def coerce(what: str, tp: Any, value: Any) -> Any:
    """`value` as type `tp` (bool, int, float, str, Path, Literal, X | None, list[X], tuple[X, ...]), else a
    one-line XincError naming `what`. Strings convert to numbers/booleans (TOML, JSON and `--option` values)."""
    tp = _unwrap(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        if value not in args:
            raise XincError(f"{what}={value!r}: not a choice ; choose from {', '.join(map(str, args))}")
        return value
    if args and type(None) in args:  # X | None
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        inner = [a for a in args if a is not type(None)]
        return _first(what, inner, value)
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise XincError(f"{what}={value!r}: expected a list ; give e.g. [{'...'}]")
        inner = args[0] if args else Any
        items = [coerce(what, inner, v) for v in value]
        return items if origin is list else tuple(items)
    if origin in (typing.Union, types.UnionType):
        return _first(what, list(args), value)
    try:
        return coerce_basic(tp, value)
    except (TypeError, ValueError):
        name = getattr(tp, "__name__", str(tp))
        raise XincError(f"{what}={value!r}: expected {name} ; give a {name} value") from None


def _first(what: str, types_: list[Any], value: Any) -> Any:
    """`value` as the first of `types_` that takes it."""
    for tp in types_:
        try:
            return coerce(what, tp, value)
        except XincError:
            continue
    raise XincError(f"{what}={value!r}: matches none of {', '.join(map(str, types_))} ; give a value of one of them")


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def coerce_basic(tp: Any, value: Any) -> Any:
    """`value` as the basic type `tp` (bool/int/float/str/Path; other types pass through), or TypeError/ValueError."""
    if tp is bool:
        return _bool(value)
    if tp is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise TypeError(value)
        return int(value)
    if tp is float:
        if isinstance(value, bool):
            raise TypeError(value)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise TypeError(value)
        return value
    if tp is Path:
        if not isinstance(value, str | Path):
            raise TypeError(value)
        return Path(value)
    return value


def with_options(base: T, options: dict[str, Any] | None, where: str, *, fixed: set[str] = frozenset()) -> T:
    """`base` with the fields named in `options` replaced (keys: option names as on the command line, in snake
    case, or field names; values typed with `coerce`). Unknown keys and keys in `fixed`, which the caller sets
    itself, are one-line errors. The dataclass's own checks run again on the result."""
    if not options:
        return base
    if not isinstance(options, dict):
        raise XincError(f"{where}: expected a table of options, got {options!r}")
    cls = type(base)
    hints = typing.get_type_hints(cls, include_extras=True)
    init = {f.name for f in dataclasses.fields(cls) if f.init}
    names = {opt.replace("-", "_"): fld for fld, opt in option_names(cls).items() if fld in init}
    accepted = {**{f: f for f in init}, **names}
    accepted = {k: v for k, v in accepted.items() if k not in fixed and v not in fixed}
    bad = sorted(str(k) for k in options if k not in accepted)
    if bad:
        raise XincError(f"{where}: unknown option {bad[0]!r} ; known: {', '.join(sorted(names.keys() - fixed))}")
    return dataclasses.replace(base, **{accepted[k]: coerce(f"{where}: {k}", hints[accepted[k]], v)
                                        for k, v in options.items()})


def command_line(prog: str, cfg: Any, positional: tuple[str, ...] = ()) -> str:
    """The shell command that reproduces `cfg` (fields that differ from their defaults, as `--name value`; booleans
    as `--name` / `--no-name`); `positional` names the fields written bare first (those `cfg` has)."""
    words = [str(getattr(cfg, name)) for name in positional if getattr(cfg, name, None) is not None]
    flags = option_names(type(cfg))
    for f in dataclasses.fields(cfg):
        if f.name in positional or not f.init:
            continue
        value = getattr(cfg, f.name)
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        if value == default or value is None:
            continue
        flag = "--" + flags[f.name].replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + flag[2:])
        else:
            words += [flag, *map(str, value)] if isinstance(value, list | tuple) else [flag, str(value)]
    return " ".join([prog, *(shlex.quote(w) for w in words)])


__all__ = ["as_json", "coerce", "option_names", "with_options", "command_line"]
