"""Reports: one self-contained HTML page, Markdown with PNGs, and a versioned `summary.json`.

`render(audit, out_dir)` writes `<out_dir>/<run-id>/` and points `<out_dir>/latest` at it;
`render_summary_html(audit)` gives the headline part for notebooks (`Audit._repr_html_`), and
`headline(audit)` its figures as data (label, value), as the report and summary.json show them.
"""

from __future__ import annotations

from asg_audit.report.charts import CHART_NAMES, Chart, draw_charts
from asg_audit.report.compare import compare_summaries, load_summary
from asg_audit.report.content import (
    SUMMARY_SCHEMA,
    SUMMARY_SCHEMA_VERSION,
    Headline,
    build_summary,
    headline,
)
from asg_audit.report.render import (
    DEFAULT_FORMATS,
    FORMATS,
    RenderedReport,
    parse_formats,
    render,
    render_summary_html,
)
from asg_audit.report.run_steps import RunStep

__all__ = [
    "CHART_NAMES",
    "DEFAULT_FORMATS",
    "FORMATS",
    "SUMMARY_SCHEMA",
    "SUMMARY_SCHEMA_VERSION",
    "Chart",
    "Headline",
    "RenderedReport",
    "RunStep",
    "build_summary",
    "compare_summaries",
    "draw_charts",
    "headline",
    "load_summary",
    "parse_formats",
    "render",
    "render_summary_html",
]
