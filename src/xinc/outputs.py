"""The one output-ownership mechanism: xinc replaces only what it wrote itself (docs/SEAMS.md §1).

`owned_output(out, ...)` stages a folder in `OUT.partial/`, locks `OUT.lock` for the whole write, marks the
stage with `.xinc-output.json` and swaps it into place atomically. `owned_file(path, ...)` does the same for
single files (report.html, videos). Both refuse, before any work starts, an output that is `.`/`..`/`/`,
an input or an ancestor/descendant of one, or an existing folder/file that xinc did not write — even with
`overwrite`.

Outputs of xinc < 0.2 carry no marker; they are recognised by their `config.json` (a JSON object naming
xinc: an `xinc_version` key, a `generator` starting with "xinc", or a `command` starting with "xinc",
at the top level or in its `train`/`import` section). Anything else is foreign.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from xinc.errors import XincError

MARKER = ".xinc-output.json"
HTML_MARK = '<meta name="generator" content="xinc'
SIDECAR = ".xinc.json"
MAX_NAME = 255
MAX_PATH = 4000

PathLike = str | os.PathLike


def _version() -> str:
    from xinc import __version__

    return __version__


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def partial_dir(out: PathLike) -> Path:
    """Staging folder beside `out` where an unfinished write lives until it is complete."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def lock_path(out: PathLike) -> Path:
    """Lock file beside `out` held while `out` is written."""
    out = Path(out)
    return out.with_name(out.name + ".lock")


# ----------------------------------------------------------------------------- recognising our outputs


def _names_xinc(d: Any) -> bool:
    if not isinstance(d, dict):
        return False
    if "xinc_version" in d or str(d.get("generator", "")).startswith("xinc"):
        return True
    if str(d.get("command", "")).startswith("xinc") or "xinc" in d and "kind" in d:
        return True
    return any(isinstance(d.get(k), dict) and str(d[k].get("command", "")).startswith("xinc")
               for k in ("train", "import", "pipeline", "demo"))


def is_owned(folder: PathLike) -> bool:
    """True when `folder` was written by xinc: it holds our marker, or a legacy config.json naming xinc."""
    folder = Path(folder)
    if not folder.is_dir() or folder.is_symlink():
        return False
    for name in (MARKER, "config.json"):
        p = folder / name
        if p.is_file() and not p.is_symlink():
            try:
                if _names_xinc(json.loads(p.read_text(encoding="utf-8"))):
                    return True
            except (OSError, ValueError):
                continue
    return False


def file_is_owned(path: PathLike) -> bool:
    """True when a single-file output was written by xinc (HTML generator meta, else a sidecar mark)."""
    path = Path(path)
    if path.suffix.lower() in (".html", ".htm"):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                head = f.read(4096)
        except OSError:
            return False
        return HTML_MARK in head or "<title>xinc report" in head  # the title: reports of xinc < 0.2
    side = path.with_name(path.name + SIDECAR)
    try:
        return _names_xinc(json.loads(side.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False


# ----------------------------------------------------------------------------- refusal rules


def check_path_out(out: PathLike, what: str = "--out") -> Path:
    """An output path that can be written: not empty, not too long, not inside a file. Returns it absolute."""
    if out is None or str(out).strip() == "":
        raise XincError(f"{what}: an output path is required ; give --out PATH")
    p = Path(os.path.abspath(os.path.expanduser(str(out))))
    if len(str(p)) > MAX_PATH or any(len(part.encode()) > MAX_NAME for part in p.parts):
        raise XincError(f"{what} {str(out)[:60]}...: path or file name too long ; choose a shorter path")
    for parent in reversed(p.parents):
        if parent.exists() and not parent.is_dir():
            raise XincError(f"{what} {out}: {parent} is a file, not a folder ; choose a path outside it")
    return p


def _refuse_special(out: Path, given: PathLike, what: str) -> None:
    cwd = Path.cwd().resolve()
    real = out.resolve()
    try:
        home = Path.home().resolve()
    except (RuntimeError, KeyError):  # no HOME and no passwd entry
        home = None
    if real == Path(real.anchor) or real == cwd or real in cwd.parents or real == home:
        raise XincError(f"{what} {given}: refusing to write over the current folder, one of its parents, the "
                        "home folder or / ; give a new sub-folder such as runs/out")


def _refuse_inputs(out: Path, inputs: Iterable[PathLike | None], given: PathLike, what: str,
                   descendants: bool = True, ancestors: bool = True) -> None:
    real = out.resolve()
    for inp in inputs:
        if inp is None or str(inp) == "":
            continue
        i = Path(os.path.abspath(os.path.expanduser(str(inp)))).resolve()
        if real == i:
            raise XincError(f"{what} {given}: is an input of this command ; choose another output path")
        if ancestors and i.is_relative_to(real):
            raise XincError(f"{what} {given}: holds the input {inp} ; choose an output path outside the inputs")
        if descendants and real.is_relative_to(i) and i.is_dir():
            raise XincError(f"{what} {given}: lies inside the input folder {inp} ; choose a path outside it")


def check_output_dir(out: PathLike, *, inputs: Iterable[PathLike | None] = (), overwrite: bool = False,
                     what: str = "--out") -> Path:
    """Apply every refusal rule of an output folder without writing anything; return the absolute path."""
    given = out
    out = check_path_out(out, what)
    _refuse_special(out, given, what)
    _refuse_inputs(out, inputs, given, what)
    if out.is_symlink():
        raise XincError(f"{what} {given}: is a symbolic link ; give the real folder or another path")
    if out.exists() and not out.is_dir():
        raise XincError(f"{what} {given}: exists and is a file ; choose another path")
    if out.exists():
        if not is_owned(out):
            empty = not any(out.iterdir())
            if not empty:
                raise XincError(f"{what} {given}: folder exists and was not written by xinc (no {MARKER}); "
                                "xinc never replaces it, even with --overwrite ; choose another path")
        elif not overwrite:
            raise XincError(f"{what} {given}: already exists (an earlier xinc output) ; pass --overwrite to "
                            "replace it, or choose another path")
    stage = partial_dir(out)
    if stage.exists() and not (stage.is_dir() and not stage.is_symlink() and (is_owned(stage) or _empty(stage))):
        raise XincError(f"{what} {given}: {stage} exists and is not an xinc staging folder ; move it away or "
                        "choose another path")
    return out


def _empty(folder: Path) -> bool:
    return folder.is_dir() and not any(folder.iterdir())


# ----------------------------------------------------------------------------- the lock


class OutputLock:
    """Exclusive lock file `OUT.lock` (pid, host, start time) held with flock for the whole write.

    flock is released by the kernel when its holder dies, so a lock file left by a killed process is stale
    and taken over; a live holder makes a second writer fail with one line naming its pid.
    """

    def __init__(self, out: Path, what: str = "--out"):
        self.path, self.what, self.fd = lock_path(out), what, None

    def _holder(self) -> str:
        try:
            info = json.loads(self.path.read_text())
            return f"pid {info.get('pid')} on {info.get('host')} since {info.get('started')}"
        except (OSError, ValueError):
            return "another process"

    def acquire(self) -> OutputLock:
        import fcntl

        for _ in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise XincError(f"{self.what} {self.path.with_suffix('')}: another xinc command is writing it "
                                    f"({self._holder()}) ; wait for it to finish or choose another path") from None
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed the file between our open and flock: retry
                os.close(fd)
                continue
            info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": _now()})
            os.ftruncate(fd, 0)
            os.write(fd, info.encode())
            self.fd = fd
            return self
        raise XincError(f"{self.path}: could not take the lock ; retry")

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self.fd)
        self.fd = None


# ----------------------------------------------------------------------------- folders


def _write_marker(folder: Path, kind: str, complete: bool) -> None:
    mark = {"xinc": _version(), "kind": kind, "created": _now(), "complete": complete}
    tmp = folder / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(mark) + "\n")
    os.replace(tmp, folder / MARKER)


def _swap(stage: Path, out: Path) -> None:
    """Replace `out` (ours, checked) by `stage` with renames; the old folder is removed afterwards."""
    if out.exists() and not is_owned(out):
        os.rmdir(out)  # an empty folder we were given (never one holding anything: rmdir refuses those)
        os.replace(stage, out)
    elif out.exists():
        trash = out.with_name(f".{out.name}.old-{os.getpid()}")
        if trash.exists():
            shutil.rmtree(trash)
        os.replace(out, trash)
        os.replace(stage, out)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(stage, out)


@contextlib.contextmanager
def owned_output(out: PathLike, *, inputs: Iterable[PathLike | None] = (), overwrite: bool = False,
                 resume: bool = False, kind: str = "run", what: str = "--out") -> Iterator[Path]:
    """Yield the staging folder OUT.partial/ of an output folder we own; swap it into place on success.

    resume=True: an existing stage of ours is handed over as it is (the caller resumes or empties it) and the
    stage is kept on error; otherwise an old stage of ours is emptied first and removed on error.
    """
    given = out
    inputs = list(inputs)
    out = check_output_dir(out, inputs=inputs, overwrite=overwrite, what=what)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = OutputLock(out, what).acquire()
    try:
        check_output_dir(given, inputs=inputs, overwrite=overwrite, what=what)  # again, now that we hold the lock
        stage = partial_dir(out)
        if stage.exists() and not resume:
            shutil.rmtree(stage)
        stage.mkdir(exist_ok=True)
        _write_marker(stage, kind, complete=False)
        try:
            yield stage
            _write_marker(stage, kind, complete=True)
            _swap(stage, out)
        except BaseException:
            if not resume:
                shutil.rmtree(stage, ignore_errors=True)
            raise
    finally:
        lock.release()


def legacy_pipeline(folder: Path) -> bool:
    """An interrupted `xinc run`/`xinc demo` of xinc < 0.2 (no marker, no config.json yet): its step markers
    `.steps/*.json` name a step, a key and an output inside the folder. Only claimed_folder (which writes in
    place and never replaces the folder) accepts it; is_owned does not, so it is never overwritten whole."""
    steps = folder / ".steps"
    if not steps.is_dir() or steps.is_symlink():
        return False
    for p in steps.glob("*.json"):
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (isinstance(rec, dict) and {"key", "step", "output", "params"} <= rec.keys()
                and Path(str(rec["output"])).resolve().is_relative_to(folder.resolve())):
            return True
    return False


@contextlib.contextmanager
def claimed_folder(out: PathLike, *, inputs: Iterable[PathLike | None] = (), kind: str = "pipeline",
                   what: str = "out") -> Iterator[Path]:
    """A folder written in place, step by step (`xinc run`/`xinc demo`): it must be new, empty or ours; it is
    marked at once and locked while the caller works in it. Its parts are written with owned_output/owned_file.
    """
    given = out
    out = check_path_out(out, what)
    _refuse_special(out, given, what)
    _refuse_inputs(out, inputs, given, what, ancestors=False)  # never replaced: inputs inside it are fine
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise XincError(f"{what} {given}: exists and is not a folder ; choose another path")
    if out.exists() and not (is_owned(out) or legacy_pipeline(out)) and any(out.iterdir()):
        raise XincError(f"{what} {given}: folder exists and was not written by xinc (no {MARKER}); xinc never "
                        "writes into it ; choose another path")
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = OutputLock(out, what).acquire()
    try:
        out.mkdir(exist_ok=True)
        if not (out / MARKER).is_file():
            _write_marker(out, kind, complete=False)
        yield out
    finally:
        lock.release()


def clear_stage(stage: Path) -> None:
    """Empty a staging folder of ours (held under its lock), keeping the marker."""
    for child in list(stage.iterdir()):
        if child.name != MARKER:
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def check_disk(out: PathLike, nbytes: float, what: str) -> None:
    """Refuse a write of about `nbytes` that cannot fit on the output's file system, naming the estimate."""
    p = Path(os.path.abspath(str(out)))
    while not p.exists() and p != p.parent:
        p = p.parent
    free = shutil.disk_usage(p).free
    if nbytes > free:
        raise XincError(f"{what}: needs about {nbytes / 2**30:.2f} GiB but {p} has {free / 2**30:.2f} GiB free ; "
                        "choose fewer layers/frames, --maps False, --dtype float16, or another --out")


# ----------------------------------------------------------------------------- single files


def check_output_file(path: PathLike, *, inputs: Iterable[PathLike | None] = (), overwrite: bool = True,
                      what: str = "--out") -> Path:
    """Refusal rules of a single-file output; return the absolute path."""
    given = path
    path = check_path_out(path, what)
    _refuse_special(path, given, what)
    _refuse_inputs(path, inputs, given, what, descendants=False)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise XincError(f"{what} {given}: exists and is not a regular file ; choose another path")
    if path.exists() and not file_is_owned(path):
        raise XincError(f"{what} {given}: file exists and was not written by xinc; xinc never replaces it ; "
                        "choose another path")
    if path.exists() and not overwrite:
        raise XincError(f"{what} {given}: already exists ; pass --overwrite to replace it, or choose another path")
    return path


@contextlib.contextmanager
def owned_file(path: PathLike, *, inputs: Iterable[PathLike | None] = (), overwrite: bool = True,
               kind: str = "file", what: str = "--out") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces `path` in one rename.

    HTML files must carry `<meta name="generator" content="xinc ...">` (our mark); other files get a sidecar
    `path.xinc.json`.
    """
    path = check_output_file(path, inputs=inputs, overwrite=overwrite, what=what)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = OutputLock(path, what).acquire()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(tmp)
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)
    try:
        yield tmp
        if path.suffix.lower() not in (".html", ".htm"):
            side = path.with_name(path.name + SIDECAR)
            side.write_text(json.dumps({"xinc": _version(), "kind": kind, "created": _now()}) + "\n")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        lock.release()


def html_generator_meta() -> str:
    """The mark an HTML output carries so that xinc may replace it later."""
    return f'<meta name="generator" content="xinc {_version()}">'


__all__ = ["MARKER", "claimed_folder", "clear_stage", "check_disk", "owned_output", "owned_file", "is_owned",
           "file_is_owned", "check_output_dir", "check_output_file", "check_path_out", "partial_dir", "lock_path",
           "html_generator_meta", "OutputLock"]
