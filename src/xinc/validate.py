"""Small validators every command runs before any work starts (docs/SEAMS.md §2).

Each raises `XincError("<what>: <problem> ; <what to do>")` and returns the cleaned value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from xinc.errors import XincError

# a planned allocation above this many bytes is refused before it is attempted
MAX_ALLOC_BYTES = 16 * 2**30


def _number(value: Any, flag: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise XincError(f"{flag} {value!r}: not a number ; give a number")
    if not math.isfinite(value):
        raise XincError(f"{flag} {value}: must be a finite number ; give a finite value")
    return value


def finite(value: Any, flag: str) -> float:
    """Any finite number (NaN and inf refused)."""
    return _number(value, flag)


def finite_positive(value: Any, flag: str) -> float:
    """A finite number > 0."""
    if _number(value, flag) <= 0:
        raise XincError(f"{flag} {value}: must be a positive number ; give a value > 0")
    return value


def finite_non_negative(value: Any, flag: str) -> float:
    """A finite number >= 0."""
    if _number(value, flag) < 0:
        raise XincError(f"{flag} {value}: must not be negative ; give a value >= 0")
    return value


def positive_int(value: Any, flag: str, *, maximum: int | None = None) -> int:
    """An integer >= 1 (and <= maximum when given)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise XincError(f"{flag} {value!r}: must be a positive integer ; give a whole number >= 1")
    if value < 1:
        raise XincError(f"{flag} {value}: must be a positive integer ; give a whole number >= 1")
    if maximum is not None and value > maximum:
        raise XincError(f"{flag} {value}: must be at most {maximum} ; give a smaller value")
    return value


def non_negative_int(value: Any, flag: str) -> int:
    """An integer >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise XincError(f"{flag} {value!r}: must be an integer >= 0 ; give a whole number")
    return value


def optional(fn, value: Any, flag: str, **kw) -> Any:
    """`fn(value, flag)` unless value is None."""
    return None if value is None else fn(value, flag, **kw)


def index_range(text: str | None, n: int, flag: str = "--frames") -> list[int]:
    """'0,11,22' / '0-5' / 'all' / None -> sorted unique indices in [0, n); reversed or empty ranges refused."""
    if text is None or str(text) in ("", "all"):
        return list(range(n))
    if not str(text).strip():
        raise XincError(f"{flag} {text!r}: empty selection ; give indices like 0,5 or 0-9, or 'all'")
    out: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            raise XincError(f"{flag} {text!r}: empty item in the list ; give indices like 0,5 or 0-9")
        try:
            if "-" in part[1:]:
                a, b = (int(v) for v in part.split("-", 1))
                if b < a:
                    raise XincError(f"{flag} {text!r}: range {part} is reversed ; write it as {b}-{a}")
                out.update(range(a, b + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise XincError(f"{flag} {text!r}: expected comma-separated integers or ranges like 0-5 ; "
                            "e.g. --frames 0,4,9") from None
    bad = [i for i in sorted(out) if i < 0 or i >= n]
    if bad:
        raise XincError(f"{flag}: index {bad[0]} is outside 0..{n - 1} ; choose indices in that range")
    return sorted(out)


def hw(value: str | Sequence[int] | None, flag: str, *, allow_none: bool = True) -> tuple[int, int] | None:
    """'128x256' / (128, 256) -> (H, W) of positive ints (None passes when allowed)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        if allow_none:
            return None
        raise XincError(f"{flag}: a size HxW is required ; e.g. 128x256")
    if isinstance(value, str):
        s = value.lower().replace("_", "x")
        try:
            h, w = (int(v) for v in s.split("x"))
        except ValueError:
            raise XincError(f"{flag} {value!r}: expected HxW ; e.g. 128x256") from None
    else:
        if len(value) != 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise XincError(f"{flag} {value}: expected two integers (height, width) ; e.g. 128x256")
        h, w = value
    if h <= 0 or w <= 0:
        raise XincError(f"{flag} {value}: height and width must be positive ; e.g. 128x256")
    return int(h), int(w)


def alloc(nbytes: float, what: str, advice: str = "choose smaller sizes") -> None:
    """Refuse a planned allocation larger than MAX_ALLOC_BYTES, naming the estimate."""
    if nbytes > MAX_ALLOC_BYTES:
        raise XincError(f"{what}: would need about {nbytes / 2**30:.1f} GiB of memory (limit "
                        f"{MAX_ALLOC_BYTES / 2**30:.0f} GiB) ; {advice}")


def path_out(out: Any, *, inputs: Iterable[Any] = (), overwrite: bool = False, flag: str = "--out") -> Path:
    """An output folder xinc may write (docs/SEAMS.md §1 rules), checked without writing anything."""
    from xinc.outputs import check_output_dir

    return check_output_dir(out, inputs=inputs, overwrite=overwrite, what=flag)


def file_out(out: Any, *, inputs: Iterable[Any] = (), flag: str = "--out") -> Path:
    """A single output file xinc may write (replaced only when it carries our mark)."""
    from xinc.outputs import check_output_file

    return check_output_file(out, inputs=inputs, what=flag)


def path_in(path: Any, flag: str, *, kind: str = "any") -> Path:
    """An existing input: kind 'file', 'dir' or 'any'."""
    if path is None or str(path) == "":
        raise XincError(f"{flag}: a path is required ; give an existing {'folder' if kind == 'dir' else 'file'}")
    p = Path(path)
    if not p.exists():
        raise XincError(f"{flag} {path}: not found ; check the path")
    if kind == "file" and not p.is_file():
        raise XincError(f"{flag} {path}: is not a file ; give a file")
    if kind == "dir" and not p.is_dir():
        raise XincError(f"{flag} {path}: is not a folder ; give a folder")
    return p


def names_list(text: str | None, flag: str, known: Sequence[str]) -> list[str] | None:
    """'a,b' -> ['a', 'b'] each in `known`; None -> None; an empty list (',') is refused."""
    if text is None:
        return None
    items = [s.strip() for s in str(text).split(",") if s.strip()]
    if not items:
        raise XincError(f"{flag} {text!r}: names no item ; choose from {', '.join(known)}")
    for s in items:
        if s not in known:
            raise XincError(f"{flag}: {s!r} is unknown ; choose from {', '.join(known)}")
    return list(dict.fromkeys(items))


def option_keys(given: Mapping[str, Any], known: Mapping[str, Iterable[str]], flag: str = "--option") -> None:
    """Every `aid.name` in `given` ({aid: {name: value}}) is a declared option of that analysis."""
    for aid, opts in given.items():
        if aid not in known:
            if isinstance(opts, dict):
                raise XincError(f"{flag} {aid}.*: {aid!r} is not an analysis ; choose from {', '.join(sorted(known))}")
            continue
        allowed = set(known[aid])
        if not isinstance(opts, dict):
            raise XincError(f"{flag} {aid}={opts!r}: expected {aid}.NAME=VALUE ; e.g. {aid}.<option>=1")
        for name in opts:
            if name not in allowed:
                hint = ", ".join(sorted(allowed)) or "none"
                raise XincError(f"{flag} {aid}.{name}: {aid} has no option {name!r} ; its options: {hint}")


def choice(value: Any, flag: str, choices: Sequence[str]) -> str:
    """One of `choices` (exact spelling)."""
    if value not in choices:
        raise XincError(f"{flag} {value!r}: unknown ; choose one of {', '.join(choices)}")
    return value


def plain_name(name: Any, what: str) -> str:
    """A single path component: no separators, not '.'/'..', not hidden, not empty."""
    s = str(name)
    if not s or s in (".", "..") or "/" in s or "\\" in s or "\x00" in s or s.startswith("."):
        raise XincError(f"{what} {s!r}: must be a plain name (no '/', '..' or leading '.') ; rename it")
    return s


__all__ = ["finite", "finite_positive", "finite_non_negative", "positive_int", "non_negative_int", "optional",
           "index_range", "hw", "alloc", "path_out", "file_out", "path_in", "names_list", "option_keys",
           "choice", "plain_name", "MAX_ALLOC_BYTES"]
