"""`xinc explore RUN_DIR --out explorer.html`: parse `xinc.explore.ExploreConfig`, call `write_explorer`."""

from __future__ import annotations

from xinc.cli.common import parse


def run(argv: list[str], prog: str) -> int:
    """Entry point of `xinc explore`."""
    from xinc.explore.config import ExploreConfig, write_explorer

    path = write_explorer(parse(ExploreConfig, argv, prog))
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB, self-contained; open it in any browser)")
    return 0
