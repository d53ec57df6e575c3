"""`xinc report RUN_DIR --out report.html`: parse `xinc.report.ReportConfig`, call `xinc.report.write_report`."""

from __future__ import annotations

from xinc.cli.common import parse


def run(argv: list[str], prog: str) -> int:
    """Entry point of `xinc report`."""
    from xinc.report.config import ReportConfig, write_report

    path = write_report(parse(ReportConfig, argv, prog))
    size = path.stat().st_size / 2**20
    print(f"wrote {path} ({size:.1f} MB, self-contained; open it in any browser)")
    return 0
