"""Output folders of the videos and the explorer go through the one output-ownership mechanism (SEAMS §1)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path


@contextlib.contextmanager
def video_output(out: str | Path, *, inputs: Sequence[str | Path] = (), overwrite: bool = False,
                 kind: str = "video") -> Iterator[Path]:
    """Staging folder that becomes `out` atomically when the block succeeds."""
    try:
        from xinc.outputs import owned_output
    except ImportError:  # before xinc.outputs lands: the atomic folder swap it replaces
        from xinc.errors import XincError
        from xinc.utils import atomic_dir

        if Path(out).exists() and not overwrite:
            raise XincError(f"{out}: already exists; pass --overwrite True or choose another --out") from None
        with atomic_dir(out) as stage:
            yield stage
        return
    with owned_output(out, inputs=tuple(inputs), overwrite=overwrite, kind=kind) as stage:
        yield stage


def check_html_target(path: str | Path) -> None:
    """Refuse, before any work, a target that is a folder or a file xinc did not write (no generator mark)."""
    from xinc.errors import XincError

    path = Path(path)
    if path.is_dir() or (path.exists() and '<meta name="generator" content="xinc' not in
                         path.read_text(errors="replace")[:4096]):
        raise XincError(f"{path}: exists and was not written by xinc; choose another --out")


def write_owned_html(path: str | Path, text: str, *, inputs: Sequence[str | Path] = ()) -> Path:
    """Write an HTML page atomically; an existing file is replaced only when xinc wrote it (generator mark)."""
    path = Path(path)
    try:
        from xinc.outputs import owned_file
    except ImportError:  # before xinc.outputs lands: the same refusal by the page's generator mark
        from xinc.utils import atomic_save

        check_html_target(path)
        atomic_save(path, lambda p: Path(p).write_text(text, encoding="utf-8"))
        return path
    with owned_file(path, inputs=tuple(inputs)) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return path
