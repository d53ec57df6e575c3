"""Output folders of the videos and the explorer page go through the one output-ownership mechanism
(`xinc.outputs`, SEAMS §1): staged, locked, marked, swapped in atomically; never over anything xinc did not write."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from xinc.outputs import check_output_file, owned_file, owned_output


@contextlib.contextmanager
def video_output(out: str | Path, *, inputs: Sequence[str | Path] = (), overwrite: bool = False,
                 kind: str = "video") -> Iterator[Path]:
    """Staging folder that becomes `out` atomically when the block succeeds."""
    with owned_output(out, inputs=tuple(inputs), overwrite=overwrite, kind=kind) as stage:
        yield stage


def check_html_target(path: str | Path, *, inputs: Sequence[str | Path] = ()) -> None:
    """Refuse, before any work, a target that is an input, a folder or a file xinc did not write."""
    check_output_file(path, inputs=tuple(inputs))


def write_owned_html(path: str | Path, text: str, *, inputs: Sequence[str | Path] = ()) -> Path:
    """Write an HTML page (carrying xinc's generator mark) atomically through owned_file."""
    with owned_file(path, inputs=tuple(inputs), kind="explorer") as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return Path(path)
