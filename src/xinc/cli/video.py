"""`xinc video MODEL_DIR --out DIR`: parse `xinc.video.VideoDirConfig`, call `xinc.video.write_videos`."""

from __future__ import annotations

from xinc.cli.common import command, parse


def run(argv: list[str], prog: str) -> int:
    """Entry point of `xinc video`."""
    from xinc.video.config import VideoDirConfig, write_videos

    cfg = parse(VideoDirConfig, argv, prog)
    res = write_videos(cfg, command=command(prog, argv))
    for kind, v in res["videos"].items():
        print(f"{kind}: {', '.join(v['files'])} ({v['seconds']:.1f} s)")
    print(f"wrote {cfg.out}")
    return 0
