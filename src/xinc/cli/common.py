"""Shared CLI plumbing: parse a dataclass of options with tyro; usage errors become one line."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import re
import typing
from typing import TypeVar

import tyro

from xinc.errors import XincError

T = TypeVar("T")
_BOX = re.compile(r"[\u2500-\u257f]+")


def bool_fields(cls: type) -> tuple[str, ...]:
    """Names of the bool options of an options dataclass (they may be given bare: `--overwrite`)."""
    hints = typing.get_type_hints(cls)
    return tuple(f.name for f in dataclasses.fields(cls) if hints.get(f.name) is bool)


def expand_bare_flags(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """`--quick` -> `--quick True`, `--no-progress` -> `--progress False` (bool options given bare)."""
    out: list[str] = []
    for i, tok in enumerate(argv):
        name = tok[2:].replace("-", "_") if tok.startswith("--") else None
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if name in names and (nxt is None or nxt.lower() not in ("true", "false")):
            out += [tok, "True"]
        elif name and name.startswith("no_") and name[3:] in names:
            out += [f"--{tok[5:]}", "False"]
        else:
            out.append(tok)
    return out


def usage_line(text: str) -> str:
    """tyro's boxed usage error -> one line: '<title>: <message>'."""
    lines = [_BOX.sub(" ", ln).strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        return "invalid arguments"
    title, body = lines[0], []
    for ln in lines[1:]:
        if ln.startswith(("Argument helptext", "For full helptext")):
            break
        body.append(ln)
    return f"{title}: {' '.join(body)}" if body else title


def parse(cls: type[T], argv: list[str], prog: str) -> T:
    """Parse argv into an instance of the options dataclass `cls` (its docstring is the help text).

    Bare bool flags are accepted; a usage error raises XincError with one line; --help exits 0.
    """
    description = inspect.cleandoc(cls.__doc__ or "")
    argv = expand_bare_flags(list(argv), bool_fields(cls))
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return tyro.cli(cls, args=argv, prog=prog, description=description,
                            config=(tyro.conf.FlagConversionOff,))
    except SystemExit as e:
        if e.code in (0, None):
            raise
        raise XincError(f"{prog}: {usage_line(err.getvalue())} ; run `{prog} --help` for the options") from None
