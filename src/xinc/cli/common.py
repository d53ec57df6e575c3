"""Shared CLI plumbing: parse a dataclass of options with tyro; usage errors become one line."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import io
import re
import sys
import types
import typing
from typing import TypeVar

import tyro

from xinc.config import REPEATABLE
from xinc.errors import XincError

T = TypeVar("T")
_BOX = re.compile(r"[\u2500-\u257f]+|-{3,}|^\s*[|+]|[|+]\s*$")  # box drawing, also its ASCII form


def bool_fields(cls: type) -> tuple[str, ...]:
    """Names of the bool options of an options dataclass (they may be given bare: `--overwrite`)."""
    hints = typing.get_type_hints(cls)
    return tuple(f.name for f in dataclasses.fields(cls) if hints.get(f.name) is bool)


def old_bool_spelling(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """`--overwrite True` / `--progress False` (the spelling before issue 16) -> `--overwrite` / `--no-progress`,
    with a deprecation line. Accepted for this release only; `--flag` and `--no-flag` are tyro's own booleans."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok, nxt = argv[i], argv[i + 1] if i + 1 < len(argv) else None
        if tok.startswith("--") and tok[2:].replace("-", "_") in names and str(nxt).lower() in ("true", "false"):
            new = tok if str(nxt).lower() == "true" else f"--no-{tok[2:]}"
            print(f"xinc: deprecated: `{tok} {nxt}` is now written `{new}` (the old spelling goes in the next "
                  "release)", file=sys.stderr)
            out.append(new)
            i += 2
        else:
            out.append(tok)
            i += 1
    return out


def _repeatable(tp) -> bool:
    """A list type marked `Annotated[..., xinc.config.REPEATABLE]` (optionally `| None`)."""
    if typing.get_origin(tp) is typing.Annotated:
        return any(m is REPEATABLE for m in tp.__metadata__) or _repeatable(typing.get_args(tp)[0])
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_repeatable(a) for a in typing.get_args(tp) if a is not type(None))
    return False


def list_fields(cls: type) -> tuple[str, ...]:
    """Names of the options of an options dataclass whose repeated flags add up (`--option a --option b`):
    list fields marked REPEATABLE. Other list options keep tyro's rule: the last occurrence wins."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return tuple(f.name for f in dataclasses.fields(cls) if _repeatable(hints.get(f.name)))


def merge_repeated(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """Gather every occurrence of a repeatable list option into its first one: `--option a --option b c` ->
    `--option a b c` (tyro alone keeps only the last occurrence, silently). `--name=v` counts as an occurrence;
    values run up to the next `--flag` (or -h)."""
    flags = {f"--{n}" for n in names} | {f"--{n.replace('_', '-')}" for n in names}
    out: list[str | tuple[str, str]] = []  # tokens, and (flag, name) where a repeatable option's values go
    values: dict[str, list[str]] = {}
    i = 0
    while i < len(argv):
        flag, eq, val = argv[i].partition("=")
        i += 1
        if flag not in flags:
            out.append(argv[i - 1])
            continue
        key = flag[2:].replace("-", "_")
        if key not in values:
            values[key] = []
            out.append((flag, key))
        values[key] += [val] if eq else []
        while i < len(argv) and not argv[i].startswith("--") and argv[i] != "-h":
            values[key].append(argv[i])
            i += 1
    return [t for item in out for t in ([item] if isinstance(item, str) else [item[0], *values[item[1]]])]


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
    """tyro parses argv straight into the library config dataclass `cls` (its docstring is the help text).

    Booleans are `--flag` / `--no-flag`; list options take several values after one flag; a repeated flag
    adds to REPEATABLE ones (merge_repeated) and replaces the others; a usage error raises XincError with one
    line; --help exits 0.
    """
    description = inspect.cleandoc(cls.__doc__ or "")
    argv = merge_repeated(old_bool_spelling([str(a) for a in argv], bool_fields(cls)), list_fields(cls))
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return tyro.cli(cls, args=argv, prog=prog, description=description)
    except SystemExit as e:
        if e.code in (0, None):
            raise
        raise XincError(f"{prog}: {usage_line(err.getvalue())} ; run `{prog} --help` for the options") from None


def command(prog: str, argv: list[str]) -> str:
    """The command line as the user typed it (recorded in the output's config.json)."""
    import shlex

    return " ".join([prog, *(shlex.quote(str(a)) for a in argv)])
