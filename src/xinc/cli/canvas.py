"""`xinc canvas MODEL_DIR --out OUT`: parse `xinc.canvas.CanvasConfig`, call `xinc.canvas.run_canvas`."""

from __future__ import annotations

from xinc.cli.common import command, parse


def run(argv: list[str], prog: str) -> int:
    """Entry point of `xinc canvas`."""
    from xinc.canvas.config import CanvasConfig
    from xinc.canvas.store import STORE_NAME
    from xinc.canvas.write import run_canvas

    cfg = parse(CanvasConfig, argv, prog)
    out = run_canvas(cfg, command=command(prog, argv))
    print(f"wrote {out / STORE_NAME}")
    return 0
