"""Render an `Audit` as `index.html` (self-contained), `report.md` (+ PNGs) and `summary.json`.

Layout: `<out>/<run-id>/{index.html, report.md, <chart>.png, summary.json}` and `<out>/latest`
pointing at the newest run (a relative symlink; where symlinks fail, a copy), plus
`<out>/LATEST`, a one-line pointer file with the newest run id that works everywhere.

Escaping: the HTML comes from Jinja templates with autoescape on; the page carries a
Content-Security-Policy that allows no script at all, as a second line of defence. The Markdown
escapes every data string (`md_escape`). Both show control characters and bidi overrides from
the data as the same visible escapes (`\x1b`, `\u202e`: `model.printable`, Jinja's `finalize`
for the HTML), so a label cannot reverse a cell or act on a terminal showing the file. A data
value in a table cell is shown the same way in both (`cells.cell_text`, the `cell` filter here,
`markdown.md_cell`): on one line, newline, tab and CR as `\x0a`, `\x09`, `\x0d`, and cut past
`cells.CELL_LIMIT` characters.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import jinja2
import polars as pl

from asg_audit.errors import ConfigError
from asg_audit.model import new_run_id, printable
from asg_audit.report import content
from asg_audit.report.cells import CELL_LIMIT, MESSAGE_LIMIT, cell_text
from asg_audit.report.charts import STORE_WIDE, Chart, draw_charts
from asg_audit.report.compare import (
    PREVIOUS,
    choose_previous,
    compare_summaries,
    finding_keys,
    load_summary,
    resolve_compare,
)
from asg_audit.report.empty import NO_DATA, empty_reasons, no_data, not_run_note
from asg_audit.report.feature_tables import HTTP_BY_RUN, layout
from asg_audit.report.folder import (
    _point_latest,
    _publish,
    _staging_folder,
    _sweep_stale,
    _write,
    _write_error,
    check_report_folder,
    check_report_pointers,
    check_run_folder,
    run_id_problem,
)
from asg_audit.report.markdown import render_markdown
from asg_audit.report.methodology import methodology
from asg_audit.report.run_steps import RunStep, banner, normalise_steps, run_object
from asg_audit.report.words import counted, plural

if TYPE_CHECKING:
    from asg_audit.audit import Audit

__all__ = [
    "DEFAULT_FORMATS",
    "FORMATS",
    "RenderedReport",
    "check_report_folder",
    "check_report_pointers",
    "parse_formats",
    "render",
    "render_summary_html",
]

FORMATS: Final = ("html", "md", "json")
DEFAULT_FORMATS: Final = FORMATS
MAX_TABLE_ROWS: Final = 50


@dataclass(frozen=True, slots=True)
class RenderedReport:
    """Where a report was written: its run id, folder and one path per format."""

    run_id: str
    folder: Path
    paths: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


def parse_formats(text: str | Iterable[str], *, what: str = "--format") -> tuple[str, ...]:
    """Return the formats asked for (`html,md,json` or an iterable), validated, in order.

    `what` names the option or argument in errors: `--format` for the command line, `render
    formats` for `render`. Neither a str nor an iterable of str is a TypeError, an unknown or
    missing format a ConfigError.
    """
    expected = f"expected some of {','.join(FORMATS)}"
    if isinstance(text, str):
        items = text.split(",")
    elif isinstance(text, Iterable) and not isinstance(text, bytes | bytearray | memoryview):
        items = list(text)
        bad = [type(i).__name__ for i in items if not isinstance(i, str)]
        if bad:
            raise TypeError(
                f"{what}: {expected} as a str or an iterable of str, got an iterable holding"
                f" {bad[0]}"
            )
    else:
        raise TypeError(
            f"{what}: {expected} as a str or an iterable of str, got {type(text).__name__}"
        )
    wanted = [i.strip().lower() for i in items if i.strip()]
    unknown = sorted(set(wanted) - set(FORMATS))
    if unknown or not wanted:
        raise ConfigError(f"{what}: {expected}, got {text!r}")
    return tuple(f for f in FORMATS if f in wanted)


def _visible(value: Any) -> Any:
    """Every value a template writes, before autoescape: control characters (ESC, BEL, C1)
    and bidi overrides and isolates (U+202E) shown as `\x1b`, `\u202e`, as in report.md
    (`md_escape`), so that no cell is reversed and `cat index.html` runs no terminal escape."""
    if value is None or isinstance(value, bool | int | float) or hasattr(value, "__html__"):
        return value  # numbers; markup the templates made themselves
    return printable(value)


_ENV: Final = jinja2.Environment(
    loader=jinja2.PackageLoader("asg_audit.report", "templates"),
    autoescape=True,  # every data string is escaped; only the templates' own markup is markup
    finalize=_visible,
    undefined=jinja2.StrictUndefined,
    trim_blocks=False,
)


_ENV.filters.update(
    # a data value in a table cell, as report.md shows it (`markdown.md_cell`)
    cell=cell_text,
    # a finding's message: our sentence, which may quote a value; no quotes at its edges
    message=lambda value: cell_text(value, MESSAGE_LIMIT, quote_edges=False),
)
_ENV.globals.update(
    fmt=content.format_value,
    change=content.format_change,
    difference_header=content.difference_header,
    HTTP_BY_RUN=HTTP_BY_RUN,
    MESSAGE_LIMIT=MESSAGE_LIMIT,  # a setting's value: cut only past this
    counted=counted,
    plural=plural,
)


@dataclass(frozen=True, slots=True)
class Table:
    """A table ready for any format: headers, formatted rows, cell classes, rows left out."""

    headers: list[str]
    rows: list[list[str]]
    classes: list[str]
    more: int = 0
    empty: str = NO_DATA  # what the table says without rows: `No data: <why>.`
    caption: str = ""  # a chain or billing table's own caption
    cut: int = CELL_LIMIT  # the characters of a cell shown (`cells.cell_text`)


def _cell(value: Any, kind: str) -> str:
    if kind == "date" and isinstance(value, datetime):
        return value.strftime("%Y-%m-%d")
    if kind == "month" and isinstance(value, datetime):
        return value.strftime("%Y-%m")
    if isinstance(value, list):
        return ", ".join(content.format_value(v) for v in value)
    return content.format_value(value, kind)


def _kind_of(column: str, dtype: pl.DataType) -> str:
    """Return how a column of a table without a layout of its own (chain, billing) is shown."""
    if dtype.is_integer():
        return "sats" if column.endswith("_sats") else "count"
    if dtype.is_float():
        return "num"
    return "text"  # text, dates; flags are `yes`/`no` whatever the kind


def frame_table(
    frame: pl.DataFrame | None,
    columns: Sequence[tuple[str, str, str]] | None = None,
    *,
    limit: int = MAX_TABLE_ROWS,
) -> Table:
    """Return a frame as a `Table`; `columns` are (column, header, kind), default all as text."""
    if frame is None:
        return Table([], [], [])
    if columns is None:
        columns = [(c, c, _kind_of(c, dtype)) for c, dtype in frame.schema.items()]
    columns = [c for c in columns if c[0] in frame.columns]
    numeric = {"count", "sats", "seconds", "share", "ratio", "num"}
    rows = [
        [_cell(row[c], kind) for c, _, kind in columns]
        for row in frame.head(limit).iter_rows(named=True)
    ]
    classes = ["num" if kind in numeric else "" for _, _, kind in columns]
    return Table([h for _, h, _ in columns], rows, classes, max(frame.height - limit, 0))


_LAT = [
    ("n", "tasks", "count"),
    ("mean_s", "mean", "seconds"),
    ("p50_s", "p50", "seconds"),
    ("p95_s", "p95", "seconds"),
    ("p99_s", "p99", "seconds"),
    ("max_s", "max", "seconds"),
    ("share_over_slo", "over SLO", "share"),
]
_RATE = [
    ("tasks", "tasks", "count"),
    ("agreeing", "A", "count"),
    ("labels", "W", "count"),
    ("rate", "rate", "share"),
    ("wilson_low", "95% low", "share"),
    ("wilson_high", "95% high", "share"),
]


def _collection_frame(f: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Return polls per task and detection delay as one text table (each row its own unit)."""
    polls, delay = f["polls_per_task"], f["detection_delay"]
    rows = []
    if polls.height and polls["tasks"][0]:
        p = polls.row(0, named=True)
        # polls are counts: `1`, `17` (a mean or an interpolated percentile keeps its fraction)
        figures = [content.format_value(p[k], "num") for k in ("mean", "p50", "p90", "max")]
        rows.append(["polls per task", p["tasks"], *figures])
    if delay.height and delay["tasks"][0]:
        d = delay.row(0, named=True)
        rows.append(
            [
                "detection delay",
                d["tasks"],
                *(
                    content.format_value(d[f"{k}_s"], "seconds")
                    for k in ("mean", "p50", "p90", "max")
                ),
            ]
        )
    unwatched = delay["unwatched"][0] if delay.height and "unwatched" in delay.columns else 0
    if unwatched:
        # settled before any of our runs could see them: no detection delay to measure
        rows.append(["settled before we watched", unwatched, "", "", "", ""])
    schema = {
        "measure": pl.String,
        "tasks": pl.Int64,
        "mean": pl.String,
        "p50": pl.String,
        "p90": pl.String,
        "max": pl.String,
    }
    return pl.DataFrame(rows, schema=schema, orient="row")


# The runs table: what each run stored, then the run's own counters (`stats`: every request
# and answer, stored or not: a 429 or a repeated 202 is counted there, not stored). Both views.
RUN_COLUMNS: Final = [
    ("run_id", "run", "text"),
    ("command", "command", "text"),
    ("status", "status", "text"),
    # an ingest run's stored records are file records, not HTTP answers
    ("answers", "records", "count"),
    ("http_404", "stored 404", "count"),
    ("http_429", "stored 429", "count"),
    ("http_5xx", "stored 5xx", "count"),
    ("run_requests", "requests (run)", "count"),
    ("run_http_429", "429 (run)", "count"),
    ("run_http_5xx", "5xx (run)", "count"),
]
_STORED: Final = ("answers", "http_404", "http_429", "http_5xx")
# the commands whose runs store records (observations) under their run id: polls, file
# records, webhook deliveries. track, verify-chain, billing and audit runs store none there.
_STORING_COMMANDS: Final = ("collect", "ingest", "serve-webhooks")


def _runs_frame(frame: pl.DataFrame, *, windowed: bool = False) -> pl.DataFrame:
    """Return the runs frame with a run that stored nothing shown as having stored 0, only
    where that is known: a run of a command that stores records (`_STORING_COMMANDS`) in a
    report without a window. Under `--since/--until` only the window's records are counted
    (a run's records outside it are not 0), and a run that stores no records (track,
    verify-chain, billing) has no count: both stay `n/a`. A counter the run did not keep (an
    ingest run has no requests) stays unknown."""
    stored = [c for c in _STORED if c in frame.columns]
    if not stored or windowed or "command" not in frame.columns:
        return frame
    storing = pl.col("command").is_in(list(_STORING_COMMANDS))
    return frame.with_columns(
        pl.when(storing).then(pl.col(c).fill_null(0)).otherwise(pl.col(c)).alias(c) for c in stored
    )


def _explained(tables: dict[str, Table], reasons: dict[str, str | None]) -> dict[str, Table]:
    """Return the tables, each saying why it is empty when the reason is known."""
    return {
        name: dataclasses.replace(t, empty=no_data(reasons.get(name))) for name, t in tables.items()
    }


def _tables(f: dict[str, pl.DataFrame], *, windowed: bool = False) -> dict[str, Table]:
    fixed = [
        ("tasks", "tasks", "count"),
        ("mean", "mean", "num"),
        ("p50", "p50", "num"),
        ("p90", "p90", "num"),
        ("max", "max", "num"),
    ]
    return {
        "latency_by_threshold": frame_table(
            f["latency_by_threshold"], [("threshold", "T", "text"), *_LAT]
        ),
        "ageing": frame_table(
            f["ageing"],
            [
                ("status", "status", "text"),
                ("age", "age", "text"),
                ("tasks", "tasks", "count"),
                ("oldest_s", "oldest", "seconds"),
            ],
        ),
        "agreement_by_threshold": frame_table(
            f["agreement_by_threshold"], [("threshold", "T", "text"), *_RATE]
        ),
        "invariants": frame_table(
            f["invariants"],
            [
                ("invariant", "invariant", "text"),
                ("violations", "violations", "count"),
                ("tested", "of", "count"),
                ("share", "share", "share"),
            ],
        ),
        "cost_model_fit": frame_table(
            # no rows (shown as "No data") when no settled task has a known cost to explain
            f["cost_model_fit"].filter(pl.col("tasks") > 0),
            [
                ("model", "model", "text"),
                ("configured", "configured", "text"),
                ("explained", "explained", "count"),
                ("tasks", "of", "count"),
                ("share", "share", "share"),
            ],
        ),
        "spend_by_month": frame_table(
            f["spend_by_month"],
            [
                ("period_start", "month (UTC)", "month"),
                ("tasks", "tasks", "count"),
                ("cost_sats", "spent", "sats"),
                ("unknown_costs", "cost 0 (unknown)", "count"),
                ("no_cost_reported", "no cost reported", "count"),
            ],
        ),
        "txid_health": frame_table(
            f["txid_health"],
            [
                ("settled", "settled", "count"),
                ("well_formed", "well-formed", "count"),
                ("malformed", "malformed", "count"),
                ("missing", "missing", "count"),
                ("distinct_txids", "distinct txids", "count"),
            ],
        ),
        "collection": frame_table(_collection_frame(f), [("measure", "measure", "text"), *fixed]),
        "source_coverage": frame_table(
            f["source_coverage"],
            [
                ("seen_by", "seen by", "text"),
                ("tasks", "tasks", "count"),
                ("in_files", "also in ingested files", "count"),
            ],
        ),
        "http_by_run": frame_table(_runs_frame(f["http_by_run"], windowed=windowed), RUN_COLUMNS),
    }


def _feature_table(name: str, frame: pl.DataFrame) -> Table:
    """Return a chain or billing frame as a table with a human caption and headers."""
    caption, columns = layout(name, [(c, _kind_of(c, d)) for c, d in frame.schema.items()])
    return dataclasses.replace(frame_table(frame, columns), caption=caption)


def _optional_tables(f: dict[str, pl.DataFrame], prefix: str) -> list[tuple[str, Table]]:
    """Return the non-empty frames of a feature that may be absent (chain, billing)."""
    return [
        (name, _feature_table(name, frame))
        for name, frame in f.items()
        if name.startswith(prefix) and frame.height > 0
    ]


FEE_TABLE: Final = "fee_coverage"
# chain tables counted over every stored chain transaction, whatever the report's window
STORE_WIDE_TABLES: Final = frozenset({"chain_status", FEE_TABLE})


def _store_wide(name: str, table: Table, windowed: bool) -> tuple[str, Table]:
    """Return (`name`, `table`), its caption saying it counts the whole store when the report
    has a window and the table is one of `STORE_WIDE_TABLES`."""
    if not windowed or name not in STORE_WIDE_TABLES:
        return name, table
    return name, dataclasses.replace(table, caption=f"{table.caption}{STORE_WIDE}")


def _chain_tables(
    f: dict[str, pl.DataFrame], fees: dict[str, Any] | None, *, windowed: bool = False
) -> list[tuple[str, Table]]:
    """Return the chain section's tables: the `chain*` frames and, right after
    `chain_coverage`, `fee_coverage` (how many fees `chain.fee_rate` could check), whose name
    `_optional_tables` would not pick. Under a window, the store-wide ones (`STORE_WIDE_TABLES`)
    say so in their captions."""
    tables = [_store_wide(name, t, windowed) for name, t in _optional_tables(f, "chain")]
    frame = f.get(FEE_TABLE)
    if fees is None or frame is None or frame.height == 0:
        return tables
    fee_table = _store_wide(FEE_TABLE, _feature_table(FEE_TABLE, frame), windowed)[1]
    names = [name for name, _ in tables]
    at = names.index("chain_coverage") + 1 if "chain_coverage" in names else len(tables)
    return [*tables[:at], (FEE_TABLE, fee_table), *tables[at:]]


def _data_uri(chart: Chart) -> str:
    return "data:image/png;base64," + base64.b64encode(chart.png).decode("ascii")


_FINDING_KEYS: Final = ("check_id", "severity", "entity_type", "entity_id", "expected", "actual")


def _finding_table(rows: list[dict[str, Any]]) -> Table:
    frame = pl.DataFrame(
        [{k: None if r.get(k) is None else str(r[k]) for k in _FINDING_KEYS} for r in rows],
        schema=dict.fromkeys(_FINDING_KEYS, pl.String),
    )
    return frame_table(frame, [(k, k.replace("_", " "), "text") for k in _FINDING_KEYS])


def build_context(
    audit: Audit,
    *,
    run_id: str,
    generated_at: datetime,
    charts: dict[str, Chart],
    compare: dict[str, Any] | None,
    tool_version: str,
    summary: dict[str, Any] | None = None,
    steps: list[RunStep] | None = None,
    groups: list[dict[str, Any]] | None = None,
    compare_skipped: str | None = None,
) -> dict[str, Any]:
    """Return everything the HTML and Markdown templates show (`summary`: the summary.json
    document, which says how many findings of each check it holds; `steps`: the audit run's
    steps before the report, or None outside `asg-audit audit`; `groups`:
    `content.findings_by_check(audit.findings)` when the caller has it already;
    `compare_skipped`: why `--compare previous` found no report of this store to compare with)."""
    f = audit.frames
    reasons = empty_reasons(audit)
    if groups is None:
        groups = content.findings_by_check(audit.findings)
    _where_findings_are(groups, summary)
    stored = summary.get("findings_stored_run_id") if summary else None
    left_out = int(summary.get("findings_left_out", 0)) if summary else 0
    fees = content.fee_coverage(audit)
    windowed = audit.windowed
    chain_tables = _chain_tables(f, fees, windowed=windowed)
    billing_tables = _optional_tables(f, "billing")
    shown = {name for name, _ in chain_tables}
    lines = methodology(
        left_out=left_out,
        stored_run_id=stored,
        chain_coverage="chain_coverage" in shown,
        fee_coverage=FEE_TABLE in shown,
    )
    toc = (
        [("headline", "Headline")]
        + ([("compare", "Compared")] if compare else [])
        + [
            ("latency", "Latency"),
            ("backlog", "Backlog"),
            ("consensus", "Consensus"),
            ("costs", "Costs"),
        ]
        + [("chain", "Chain"), ("billing", "Billing")]
        + [
            ("collection", "Collection"),
            ("findings", "Findings"),
            ("methodology", "Methodology"),
            ("configuration", "Configuration"),
        ]
    )
    chart_ctx = {
        name: {"name": c.name, "title": c.title, "alt": c.alt, "uri": _data_uri(c)}
        for name, c in charts.items()
    }
    return {
        "run_id": run_id,
        "generated_at": content.utc_iso(generated_at, "seconds"),
        "as_of": content.utc_iso(audit.as_of, "seconds"),
        "since": content.utc_iso(audit.since),
        "until": content.utc_iso(audit.until),
        "worst": audit.worst_severity(),
        # the audit run's steps (`asg-audit audit`): a banner when one failed, and the table
        "run_banner": banner(steps) if steps is not None else None,
        "run_steps": _steps_table(steps) if steps is not None else None,
        "toc": toc,
        "headline": content.headline(audit),
        "charts": _ChartSlots(chart_ctx),
        "chart_list": list(charts.values()),
        "tables": _explained(_tables(f, windowed=windowed), reasons),
        # the window's tasks, by creation, in the month they settled: its edge months are not
        # the billed months (tester T5: 21,825 sats of November next to a bill's 23,775)
        "spend_month_caption": "Spend per month (UTC months of settlement"
        + (
            "; the window's tasks (by creation) only: a month may differ from the billed one)"
            if windowed
            else ")"
        ),
        "backlog_note": content.backlog_note(audit),
        "chain_tables": chain_tables,
        # shown with its table in the chain section: `fees checked (chain.fee_rate): X of Y`
        "fee_line": fees["line"] if fees else None,
        "billing_tables": billing_tables,
        # in place of a section's tables when the store holds none: not run, or found nothing
        "chain_note": (
            None if chain_tables or "chain" in charts else not_run_note(audit, "verify-chain")
        ),
        "billing_note": None if billing_tables else not_run_note(audit, "billing"),
        "groups": groups,
        "methodology": lines,
        "config": content.config_rows(audit.config),
        "compare": compare,
        "compare_skipped": compare_skipped,
        **_compare_tables(compare, reasons),
        "tool_version": tool_version,
        "schema_version": content.SUMMARY_SCHEMA_VERSION,
    }


def _steps_table(steps: list[RunStep]) -> Table:
    """Return the audit run's steps as a table: step, outcome, detail."""
    rows = [[s.step, s.outcome, s.detail] for s in steps]
    return Table(
        ["step", "outcome", "detail"],
        rows,
        ["", "", ""],
        empty="No steps ran before the report.",
        cut=MESSAGE_LIMIT,  # our own words, which may quote an error
    )


def _with_run(summary: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """Return `summary` with `run` right after `window` (read first, with the headline)."""
    out: dict[str, Any] = {}
    for key, value in summary.items():
        out[key] = value
        if key == "window":
            out["run"] = run
    out.setdefault("run", run)
    return out


def _where_findings_are(groups: list[dict[str, Any]], summary: dict[str, Any] | None) -> None:
    """Set each group's `more_line`: where its findings the report does not show are."""
    held = {c["check_id"]: c for c in summary.get("checks", [])} if summary else {}
    stored = summary.get("findings_stored_run_id") if summary else None
    for g in groups:
        check = held.get(g["check_id"], {})
        g["more_line"] = content.more_findings_line(
            g["more"],
            int(check.get("in_summary", g["findings"])),
            int(check.get("left_out", 0)),
            len(g["worst"]),
            stored,
        )


def _compare_tables(
    compare: dict[str, Any] | None, reasons: dict[str, str | None]
) -> dict[str, Table | None]:
    """Return the findings tables of a comparison: new, resolved, and (reports of different
    windows) those one of the two did not cover (not new, not gone)."""
    keys = {
        "compare_new": "new_findings",
        "compare_resolved": "resolved_findings",
        "compare_outside": "outside_window_findings",
        "compare_outside_previous": "outside_previous_window_findings",
    }
    if not compare:
        return dict.fromkeys(keys)
    tables = {name: _finding_table(compare.get(key, [])) for name, key in keys.items()}
    return {**_explained(tables, reasons)}


class _ChartSlots(dict[str, Any]):
    """Charts by name; a chart without data is None, so a template can skip it."""

    def __missing__(self, key: str) -> None:
        return None

    def __getattr__(self, key: str) -> Any:
        return self[key]


def render_summary_html(audit: Audit) -> str:
    """Return the headline part of the HTML report as an HTML fragment (for notebooks)."""
    content.check_audit(audit, "render_summary_html")
    groups = content.findings_by_check(audit.findings, worst=0)
    return _ENV.get_template("summary.html.j2").render(
        as_of=content.utc_iso(audit.as_of, "seconds"),
        worst=audit.worst_severity(),
        headline=content.headline(audit),
        checks=groups,
    )


def _render_into(
    folder: Path,
    audit: Audit,
    *,
    wanted: tuple[str, ...],
    run_id: str,
    generated_at: datetime,
    previous_path: Path | None,
    compare_skipped: str | None = None,
    findings_stored: bool = False,
    steps: list[RunStep] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Write a report's files into `folder`; return its summary and file names by format.
    `compare_skipped`: why `--compare previous` compared with no report (`choose_previous`)."""
    from asg_audit import __version__

    charts = (
        draw_charts(
            audit.frames,
            slo_seconds=audit.config.slo_seconds,
            windowed=audit.windowed,
        )
        if {"html", "md"} & set(wanted)
        else {}
    )
    # grouped once: summary.json reads the groups' counts, the pages their worst findings too
    groups = content.findings_by_check(audit.findings)
    summary = content.build_summary(
        audit,
        run_id=run_id,
        generated_at=generated_at,
        charts=list(charts),
        tool_version=__version__,
        stored_run_id=run_id if findings_stored else None,
        groups=groups,
    )
    if steps is not None:  # `asg-audit audit`: whether the run's steps were all done
        summary = _with_run(summary, run_object(steps))
    comparison = None
    if previous_path is not None:
        # every current finding, not only those the summary lists: one cut from a long list
        # is not resolved
        every = audit.findings.select("check_id", "entity_type", "entity_id").iter_rows()
        comparison = compare_summaries(
            summary, load_summary(previous_path), current_keys=finding_keys(every)
        )
        summary["compare"] = {k: v for k, v in comparison.items()}
    elif compare_skipped is not None:
        summary["compare_skipped"] = compare_skipped
    ctx = build_context(
        audit,
        run_id=run_id,
        generated_at=generated_at,
        charts=charts,
        compare=comparison,
        tool_version=__version__,
        summary=summary,
        steps=steps,
        groups=groups,
        compare_skipped=compare_skipped,
    )
    names: dict[str, str] = {}
    if "html" in wanted:
        _write(folder / "index.html", _ENV.get_template("report.html.j2").render(**ctx))
        names["html"] = "index.html"
    if "md" in wanted:
        for chart in charts.values():
            (folder / f"{chart.name}.png").write_bytes(chart.png)
        _write(folder / "report.md", render_markdown(ctx))
        names["md"] = "report.md"
    # summary.json is written whatever the formats: `--compare` and `latest` find runs by it.
    # strict JSON: a number that is not finite is written null, never NaN or Infinity
    text = json.dumps(_finite(summary), indent=2, ensure_ascii=False, default=str, allow_nan=False)
    _write(folder / "summary.json", text + "\n")
    if "json" in wanted:
        names["json"] = "summary.json"
    return summary, names


def _finite(value: Any) -> Any:
    """Return `value` with every float that is not finite (NaN, infinities) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _check_arguments(
    audit: object,
    out_dir: object,
    *,
    run_id: object,
    compare: object,
    generated_at: object,
    findings_stored: object = False,
) -> None:
    """Raise TypeError or ConfigError naming a bad argument of `render` (before any write)."""
    from asg_audit.audit import Audit

    if not isinstance(audit, Audit):
        raise TypeError(
            f"render audit: expected an Audit (asg_audit.analyze()), got {type(audit).__name__}"
        )
    if not isinstance(out_dir, str | os.PathLike):
        raise TypeError(
            f"render out_dir: expected a path (str or Path), got {type(out_dir).__name__}"
        )
    for name, value in (("run_id", run_id), ("compare", compare)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"render {name}: expected a str or None, got {type(value).__name__}")
    if generated_at is not None and not isinstance(generated_at, datetime):
        raise TypeError(
            f"render generated_at: expected a datetime or None, got {type(generated_at).__name__}"
        )
    if not isinstance(findings_stored, bool):
        raise TypeError(
            f"render findings_stored: expected a bool, got {type(findings_stored).__name__}"
        )
    if isinstance(run_id, str):
        problem = run_id_problem(run_id)
        if problem is not None:
            raise ConfigError(f"render run_id {run_id!r}: {problem}")
    if compare == "":
        # as the command line refuses `--compare ''` (an unset `$PREV`): no comparison would
        # be made and none said to be skipped (tester T3: `compare=os.environ.get("PREV", "")`)
        raise ConfigError(
            "render compare: expected a run id or 'previous', got an empty value (None: no"
            " comparison)"
        )


def render(
    audit: Audit,
    out_dir: str | Path = "reports",
    *,
    formats: str | Iterable[str] = DEFAULT_FORMATS,
    run_id: str | None = None,
    compare: str | None = None,
    generated_at: datetime | None = None,
    findings_stored: bool = False,
    steps: Mapping[str, str] | Iterable[RunStep | tuple[str, str, str]] | None = None,
) -> RenderedReport:
    """Return where the report of `audit` was written, after writing it.

    Writes `<out_dir>/<run_id>/` (index.html, report.md and its PNGs, summary.json, as
    `formats` asks) and points `<out_dir>/latest` at the newest report. `compare` is a run id
    of an earlier report in `out_dir`, or `previous`. `run_id` defaults to a new sortable id.
    `findings_stored`: the store's `findings` table holds every finding of `audit` under
    `run_id` (as `asg-audit audit` stores them), so the report can say where the findings that
    summary.json leaves out are. `steps`: the audit run's steps done before the report
    (`asg-audit audit`): a mapping step -> note as `AuditOutcome.steps` holds them, or
    `RunStep`/(step, outcome, detail) items; summary.json then gets `run` (`status`
    complete/incomplete, `steps`), and the pages the steps and, when a step failed, an
    `Incomplete audit: ...` banner. Without it nothing of the run is shown.
    """
    _check_arguments(
        audit,
        out_dir,
        run_id=run_id,
        compare=compare,
        generated_at=generated_at,
        findings_stored=findings_stored,
    )
    wanted = parse_formats(formats, what="render formats")
    run_steps = normalise_steps(steps) if steps is not None else None
    generated_at = generated_at or datetime.now(UTC)
    run_id = run_id or new_run_id(generated_at)
    root = Path(out_dir)
    folder = root / run_id
    # Refused before anything is written: a `latest`/`LATEST` or an entry at the run id that
    # asg-audit did not make (the reports folder may be any folder of the user's).
    check_report_pointers(root)
    check_run_folder(folder)
    previous_path, compare_skipped = None, None
    if compare == PREVIOUS:
        # the newest earlier report of this store: the folder may hold other stores' reports
        previous_path, compare_skipped = choose_previous(
            root, exclude=run_id, store=content.store_identity(audit), name="render compare"
        )
    elif compare:
        previous_path = resolve_compare(root, compare, exclude=run_id, name="render compare")
    # Everything is written to a hidden staging folder and moved into place once complete: a
    # report that fails half-way (a chart, a full disk) leaves no run folder, and `latest`
    # keeps pointing at the last good report.
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = _staging_folder(root, run_id)
    except OSError as exc:
        raise _write_error(root, exc, kept=False) from None
    try:
        summary, names = _render_into(
            staging,
            audit,
            wanted=wanted,
            run_id=run_id,
            generated_at=generated_at,
            previous_path=previous_path,
            compare_skipped=compare_skipped,
            findings_stored=findings_stored,
            steps=run_steps,
        )
        _publish(staging, folder)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise _write_error(root, exc, kept=False, staging=staging, folder=folder) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        _point_latest(root, run_id)  # the run just written is the newest
    except OSError as exc:
        raise _write_error(root, exc, kept=True) from None
    _sweep_stale(root)
    paths = {fmt: folder / name for fmt, name in names.items()}
    return RenderedReport(run_id=run_id, folder=folder, paths=paths, summary=summary)
