"""Top-level dispatcher. Each command lives in its own module as `run(argv, prog) -> int`.

Sub-command modules parse their own arguments with tyro from a dataclass, so every option is
typed and documented in one place. User errors (XincError) become one line on stderr, exit 2.
"""

from __future__ import annotations

import errno
import importlib
import sys

from xinc.errors import XincError

# OS errors that are the user's situation, not our bug: one line, exit 2
USER_OS_ERRORS = {
    errno.ENOSPC: "no space left on the device ; free some space or choose another --out",
    errno.EDQUOT: "disk quota exceeded ; free some space or choose another --out",
    errno.EROFS: "read-only file system ; choose a writable --out",
    errno.EACCES: "permission denied ; choose a path you may write/read",
    errno.EPERM: "operation not permitted ; choose a path you may write/read",
    errno.ENAMETOOLONG: "file name too long ; choose a shorter path",
    errno.ENOTDIR: "a part of the path is a file, not a folder ; choose another path",
    errno.EISDIR: "is a folder, not a file ; give a file",
    errno.ENOENT: "no such file or folder ; check the path",
}

# command -> "module:function" or {sub-command: "module:function"}; help text per entry.
COMMANDS: dict[str, tuple[str | dict[str, str], str]] = {
    "train": (
        {"ffn": "xinc.cli.train:train_ffn", "nerv": "xinc.cli.train:train_nerv"},
        "train an INR: `train ffn` (one image) or `train nerv` (one video)",
    ),
    "reconstruct": ("xinc.cli.train:reconstruct", "decode frames of a model directory to PNGs"),
    "import": (
        {
            "xinc-ffn": "xinc.cli.importers:import_xinc_ffn",
            "nerv": "xinc.cli.importers:import_nerv",
            "hnerv-quant": "xinc.cli.importers:import_hnerv_quant",
        },
        "convert an original checkpoint into an xinc model directory",
    ),
    "canvas": ("xinc.cli.canvas:run", "compute implicit neural canvases into a zarr store"),
    "synth": ("xinc.cli.data:synth", "generate a synthetic panoptic video in a published dataset layout"),
    "flow": ("xinc.cli.data:flow", "optical flow between consecutive frames (+ colour-wheel PNGs)"),
    "analyze": ("xinc.cli.analyze:run", "run the paper's analyses A1-A6 on a model and data"),
    "report": ("xinc.cli.report:run", "build one self-contained HTML report from an analyze run"),
    "video": ("xinc.cli.video:run", "contribution videos of a NeRV/HNeRV model (MP4; WebP/GIF for slides)"),
    "explore": ("xinc.cli.explore:run", "a self-contained HTML explorer of an analyze run (click pixels, neurons)"),
    "prune": ("xinc.cli.prune:run", "remove neurons by contribution, magnitude or at random; PSNR vs parameters"),
    "demo": ("xinc.cli.pipeline:demo", "the whole pipeline on generated data, end to end"),
    "run": ("xinc.cli.pipeline:run", "run train/canvas/analyze/report for many clips from a config"),
}


def _usage() -> str:
    lines = ["usage: xinc <command> [<sub-command>] [options]", "", "commands:"]
    for name, (target, text) in COMMANDS.items():
        subs = f" {{{','.join(target)}}}" if isinstance(target, dict) else ""
        lines.append(f"  {name + subs:<34} {text}")
    lines += ["", "`xinc <command> --help` explains each command's options."]
    return "\n".join(lines)


def _load(spec: str):
    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)


def _os_error_line(e: OSError) -> str | None:
    """One line for an OSError that describes the user's disk or permissions, else None."""
    what = USER_OS_ERRORS.get(e.errno)
    if what is None:
        return None
    name = e.filename if e.filename is not None else "output"
    return f"{name}: {what}"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `xinc` executable: the one error boundary (docs/SEAMS.md §2).

    XincError and user-side OS errors (full disk, read-only, permissions) -> one line, exit 2; any other
    exception -> one line naming the command, exit 1; `--debug` anywhere shows the traceback instead.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        return _dispatch(argv)
    except XincError as e:
        if debug:
            raise
        print(f"xinc: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xinc: interrupted", file=sys.stderr)
        return 130
    except OSError as e:
        line = _os_error_line(e)
        if debug or line is None:
            if debug:
                raise
            return _internal(argv, e)
        print(f"xinc: error: {_one_line(line)}", file=sys.stderr)
        return 2
    except Exception as e:  # the boundary: never a traceback without --debug
        if debug:
            raise
        return _internal(argv, e)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _internal(argv: list[str], e: BaseException) -> int:
    name = " ".join(argv[:2]) if argv and argv[0] in COMMANDS and isinstance(COMMANDS[argv[0]][0], dict) else (
        argv[0] if argv else "xinc")
    print(f"xinc: internal error in {name}: {type(e).__name__}: {_one_line(e)[:500]} ; please report it with "
          "the --debug output", file=sys.stderr)
    return 1


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        from xinc import __version__

        print(f"xinc {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    from xinc.threads import configure_threads

    configure_threads()  # before any command imports torch: OMP_WAIT_POLICY=PASSIVE, threads = cores available
    if name not in COMMANDS:
        print(f"xinc: error: unknown command {name!r}; run `xinc --help` for the list", file=sys.stderr)
        return 2
    target, text = COMMANDS[name]
    prog = f"xinc {name}"
    if isinstance(target, dict):
        if not rest or rest[0] in ("-h", "--help"):
            print(f"usage: {prog} {{{','.join(target)}}} [options]\n\n{text}")
            return 0 if rest else 2
        sub, rest = rest[0], rest[1:]
        if sub not in target:
            print(f"xinc: error: unknown {name} kind {sub!r}; choose one of {', '.join(target)}", file=sys.stderr)
            return 2
        prog, spec = f"{prog} {sub}", target[sub]
    else:
        spec = target
    try:
        return int(_load(spec)(rest, prog) or 0)
    except SystemExit as e:  # tyro's --help (0); anything else is a usage error
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)


if __name__ == "__main__":
    sys.exit(main())
