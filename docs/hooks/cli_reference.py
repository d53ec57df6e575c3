"""MkDocs hook: the CLI reference page is generated from the parsers (`xinc <command> --help`).

The page docs/cli.md holds the marker `<!-- xinc-cli-reference -->`; this hook replaces it with one
section per command and sub-command, each the verbatim --help text of that parser, so the reference
can never drift from the code.
"""

from __future__ import annotations

import os
import subprocess
import sys

MARKER = "<!-- xinc-cli-reference -->"


def _help(args: list[str]) -> str:
    env = {**os.environ, "COLUMNS": "110", "NO_COLOR": "1", "TERM": "dumb"}
    proc = subprocess.run([sys.executable, "-m", "xinc.cli.main", *args, "--help"], capture_output=True,
                          text=True, env=env, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"xinc {' '.join(args)} --help failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout.rstrip()


def reference() -> str:
    """Markdown: the top-level usage, then every command's --help in a code block."""
    from xinc.cli.main import COMMANDS

    parts = ["## xinc", "", "```text", _help([]), "```", ""]
    for name, (target, text) in COMMANDS.items():
        subs = list(target) if isinstance(target, dict) else [None]
        for sub in subs:
            args = [name] + ([sub] if sub else [])
            parts += [f"## xinc {' '.join(args)}", "", text[0].upper() + text[1:] + ".", "", "```text",
                      _help(args), "```", ""]
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 (MkDocs hook signature)
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, reference())
