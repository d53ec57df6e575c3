"""`xinc demo` and `xinc run CONFIG`: parse `xinc.pipeline.DemoConfig` / `RunConfig`, call the pipeline."""

from __future__ import annotations

from pathlib import Path

from xinc.cli.common import command, parse


def demo(argv: list[str], prog: str) -> int:
    """Entry point of `xinc demo`."""
    from xinc.pipeline import DemoConfig, run_demo

    res = run_demo(parse(DemoConfig, argv, prog), command=command(prog, argv))
    print(f"demo finished in {res['seconds']:.0f} s ({len(res['steps_run'])} steps run, "
          f"{len(res['steps_skipped'])} skipped)")
    print(f"report: {Path(res['report']).resolve()}")
    return 0


def run(argv: list[str], prog: str) -> int:
    """Entry point of `xinc run`."""
    from xinc.pipeline import RunConfig, run_config_file

    res = run_config_file(parse(RunConfig, argv, prog), command=command(prog, argv))
    print(f"pipeline finished: {len(res['videos'])} clip(s), {len(res['steps_run'])} steps run, "
          f"{len(res['steps_skipped'])} skipped")
    if res.get("report"):
        print(f"report: {Path(res['report']).resolve()}")
    return 0
