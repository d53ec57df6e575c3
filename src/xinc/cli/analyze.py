"""`xinc analyze MODEL_DIR --out RUN`: parse `xinc.analysis.AnalyzeConfig`, call `xinc.analysis.analyze`."""

from __future__ import annotations

import sys

from xinc.cli.common import command, parse

NOT_ANALYSES = ("model", "data", "reconstruction", "canvas", "skipped")


def run(argv: list[str], prog: str) -> int:
    """Entry point of `xinc analyze`: parse the config, run the analyses, print the findings."""
    from xinc.analysis.config import AnalyzeConfig
    from xinc.analysis.runner import analyze

    cfg = parse(AnalyzeConfig, argv, prog)
    results = analyze(cfg, command=command(prog, argv))
    if "estimate" in results:  # --estimate-only: the lines went to stderr, nothing was written
        return 0
    run_ids = [k for k in results if k not in NOT_ANALYSES]
    print(f"wrote {len(run_ids)} analyses ({', '.join(run_ids) or 'none'}) to {cfg.out}")
    for line in [s for aid in run_ids for s in results[aid].get("summary", [])[:3]]:
        print(f"  {line}")
    sys.stdout.flush()
    return 0
