"""`xinc synth` and `xinc flow`: parse `xinc.data.config.SynthDatasetConfig` / `FlowConfig`, call the library."""

from __future__ import annotations

from xinc.cli.common import command, parse


def synth(argv: list[str], prog: str) -> int:
    """Entry point of `xinc synth`."""
    from xinc.data.config import SynthDatasetConfig, write_synthetic

    o = parse(SynthDatasetConfig, argv, prog)
    cfg = write_synthetic(o)
    h, w = cfg["size"]
    vids = ", ".join(cfg["video_ids"])
    print(f"wrote {o.format} dataset with {len(cfg['video_ids'])} video(s) ({vids}), {o.frames} frames of {h}x{w} "
          f"to {o.out}")
    return 0


def flow(argv: list[str], prog: str) -> int:
    """Entry point of `xinc flow`."""
    from xinc.data.config import FlowConfig, write_flow

    o = parse(FlowConfig, argv, prog)
    cfg = write_flow(o, command=command(prog, argv))
    m = cfg["magnitude"]
    print(f"wrote {cfg['flow']['shape'][0]} flow field(s) {tuple(cfg['flow']['shape'])} ({cfg['method']}) to "
          f"{o.out}; mean |flow| {m['mean']:.3f} px")
    return 0
