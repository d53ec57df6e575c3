"""Figures and the self-contained HTML report: `write_report(ReportConfig(run_dir))` (what `xinc report` calls),
`xinc.report.html.build_report`, and the registered plots of each analysis (`xinc.report.plots`)."""

from xinc.report.config import ReportConfig, write_report

__all__ = ["ReportConfig", "write_report"]
