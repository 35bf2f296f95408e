"""`analyze`: every analysis and check over a store (or frames), gathered in an `Audit`."""

from __future__ import annotations

import copy
import math
import os
import sys
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from asg_audit.analyses import collection, consensus, costs, latency
from asg_audit.analyses._tasks import empty_frame, enrich_tasks, stable_mean
from asg_audit.checks import CheckContext, run_checks
from asg_audit.config import AuditConfig, check_wait_seconds
from asg_audit.errors import ConfigError
from asg_audit.model import (
    DOCUMENTED_STATUSES,
    FINDINGS_SCHEMA,
    RESULTS_SCHEMA,
    SUBMISSIONS_SCHEMA,
    Severity,
    TaskStatus,
)
from asg_audit.results_sql import CHANGES_SQL, RESULT_CHANGES

if TYPE_CHECKING:
    from asg_audit.store import Store

__all__ = [
    "TABLES",
    "Audit",
    "TimeArg",
    "analyze",
    "analyze_frames",
    "as_utc",
    "billing_window",
    "check_window",
]

# What `since`, `until` and `as_of` accept: an aware or naive datetime (naive is UTC, as on
# the command line), a date (its midnight, UTC) or ISO 8601 text.
TimeArg = datetime | date | str

# The store tables an audit reads (chain and billing tables feed their own checks).
TABLES: Final = (
    "results",
    "submissions",
    "observations",
    "runs",
    "poll_state",
    "chain_txs",
    "billing_usage",
    "billing_invoices",
)
_OBS_COLUMNS: Final = (
    "task_id", "run_id", "source", "observed_at", "http_status",
    "consensus_label", "confidence", "bsv_txid", "settled_at",
)  # fmt: skip
# The documented statuses before `settled`: a task in one of them is pending.
_IN_FLIGHT: Final = [
    TaskStatus.PENDING.value,
    TaskStatus.IN_PROGRESS.value,
    TaskStatus.VERIFIED.value,
]
_SEVERITY_ORDER: Final = {Severity.INFO.value: 0, Severity.WARN.value: 1, Severity.FAIL.value: 2}


@dataclass(eq=False)  # two audits are equal only when they are one (frames do not compare)
class Audit:
    """Every analysis frame and the findings of one audit; renders a summary in notebooks.

    `frames` maps a name (see `Audit.names`) to its data frame; `audit["latency_overall"]`
    is a shortcut, `"latency_overall" in audit` and `list(audit)` work as on the dict. `findings`
    has the FINDINGS_SCHEMA columns. The task counts `summary()` starts from are kept apart
    (`_counts`): not an analysis frame.
    """

    frames: dict[str, pl.DataFrame]
    findings: pl.DataFrame
    config: AuditConfig
    as_of: datetime
    since: datetime | None = None
    until: datetime | None = None
    _summary: dict[str, Any] | None = field(default=None, repr=False)
    _counts: pl.DataFrame | None = field(default=None, repr=False)

    @property
    def names(self) -> list[str]:
        """Return the names of the analysis frames (the keys of `frames`)."""
        return list(self.frames)

    @property
    def windowed(self) -> bool:
        """Whether the audit is restricted to a `since`/`until` window."""
        return self.since is not None or self.until is not None

    def __getitem__(self, name: str) -> pl.DataFrame:
        try:
            return self.frames[name]
        except KeyError:
            raise KeyError(
                f"no analysis frame named {name!r}; audit.names lists them:"
                f" {', '.join(self.frames)}"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self.frames

    def __iter__(self) -> Iterator[str]:
        return iter(self.frames)

    def summary(self) -> dict[str, Any]:
        """Return the headline KPIs as a plain dict (JSON-serialisable values): a new copy on
        each call, so that changing it in a notebook changes neither the audit nor its report
        (tester T10)."""
        if self._summary is None:
            self._summary = _summarize(self)
        return copy.deepcopy(self._summary)

    def worst_severity(self) -> str | None:
        """Return the highest severity among the findings, or None without findings."""
        if self.findings.height == 0:
            return None
        present = [str(s) for s in self.findings["severity"].unique().to_list()]
        return max(present, key=lambda s: _SEVERITY_ORDER.get(s, -1))

    def __repr__(self) -> str:
        s = self.summary()
        lines = [f"Audit as of {s['as_of']}"]
        lines += [f"  {k}: {_fmt(v)}" for k, v in s.items() if k not in ("as_of", "findings")]
        lines.append("  findings: " + _fmt(s["findings"]))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        # The same headline block as the HTML report (asg_audit.report).
        from asg_audit.report import render_summary_html

        return render_summary_html(self)


def as_utc(value: TimeArg | None, name: str) -> datetime | None:
    """Return a time argument as an aware UTC datetime (None stays None).

    A datetime without a zone is taken as UTC, as the command line does; a date is its
    midnight UTC; text is read as ISO 8601 (`2026-10-01`, `2026-10-01T12:00:00+02:00`, `...Z`).
    Anything else raises ConfigError naming the argument.
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ConfigError(f"{name}: not an ISO 8601 date or time: {value!r}") from None
    elif not isinstance(value, datetime) and isinstance(value, date):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise ConfigError(
            f"{name}: expected a datetime, a date or ISO 8601 text, got {type(value).__name__}"
        )
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items()) or "none"
    return str(value)


def _first(frame: pl.DataFrame | None, column: str) -> Any:
    """The first value of `column`; None when there is none, or it is NaN or infinite (a rate
    of no tasks is 0/0): `summary()` is JSON, which has no NaN (`allow_nan=False`)."""
    if frame is None or frame.height == 0 or column not in frame.columns:
        return None
    value = frame[column][0]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Decimal) and value == value.to_integral_value():
        # a sum of sats (Decimal(38, 0) in the frames, to go to Arrow): JSON's plain integer
        return int(value)
    return value


def _summarize(audit: Audit) -> dict[str, Any]:
    f = audit.frames
    # an Audit made by hand may still carry its counts among its frames, as analyze's did
    counts = audit._counts if audit._counts is not None else f["_counts"]
    fit = f["formula_fit"]
    explaining = f["cost_model_fit"].filter(pl.col("explained") > 0)
    agreement = f["agreement_overall"]
    unknown = f["unknown_costs"]
    by_sev = audit.findings.group_by("severity").agg(pl.len().alias("n"))
    return {
        "as_of": audit.as_of.isoformat(),
        "tasks": int(counts["tasks"][0]),
        # task ids submitted (tracked) or polled for, and those of them the store holds no
        # status of: not among `tasks`, which counts stored results (None: an Audit made by
        # hand without the frame)
        "tracked": _first(f.get("tracked_coverage"), "tracked"),
        "tracked_not_collected": _first(f.get("tracked_coverage"), "not_collected"),
        "settled": int(counts["settled"][0]),
        # every task with a status other than settled (pending + other_status)
        "unsettled": int(counts["unsettled"][0]),
        # in a documented status before settled: pending, in_progress or verified
        "pending": int(counts["pending"][0]),
        # in an undocumented status (failed, timed_out, ...), whether final or not
        "other_status": int(counts["other_status"][0]),
        # created after as_of: not aged (left out of `ageing` and `survival`)
        "created_after_as_of": int(f["created_after_as_of"]["tasks"][0]),
        "latency_mean_s": _first(f["latency_overall"], "mean_s"),
        "latency_p50_s": _first(f["latency_overall"], "p50_s"),
        "latency_p95_s": _first(f["latency_overall"], "p95_s"),
        "share_over_slo": _first(f["latency_overall"], "share_over_slo"),
        "slo_seconds": audit.config.slo_seconds,
        "agreement_rate": _first(agreement, "rate"),
        "confidence_mean": _first(counts, "confidence_mean"),
        "confidence_follows": _first(fit, "follows"),
        "confidence_share_neither": _first(fit, "share_neither"),
        "known_cost_sats": _first(unknown, "known_total_sats"),
        # settled tasks that reported cost 0 (cost.unknown's count)
        "unknown_costs": _first(unknown, "unknown"),
        # settled tasks no answer stated a cost for (webhook only, no cost field)
        "no_cost_reported": _first(unknown, "no_cost_reported"),
        # None when no settled task has a known cost, or no model explains any of them
        "best_cost_model": _first(explaining, "model"),
        "best_cost_model_share": _first(explaining, "share"),
        "findings": {
            sev: int(by_sev.filter(pl.col("severity") == sev)["n"].sum())
            for sev in ("fail", "warn", "info")
        },
        "worst_severity": audit.worst_severity(),
    }


def _lazy(
    frame: pl.LazyFrame | pl.DataFrame | None, schema: Mapping[str, pl.DataType]
) -> pl.LazyFrame:
    if frame is None:
        return empty_frame(dict(schema))
    return frame.lazy()


def _default_as_of(results: pl.LazyFrame) -> datetime:
    cols = [
        c for c in ("last_seen_at", "settled_at", "created_at") if c in results.collect_schema()
    ]
    latest = results.select(pl.max_horizontal(pl.col(c).max() for c in cols)).collect().item()
    return latest if latest is not None else datetime(1970, 1, 1, tzinfo=UTC)


def analyze_frames(
    results: pl.LazyFrame | pl.DataFrame,
    submissions: pl.LazyFrame | pl.DataFrame | None = None,
    observations: pl.LazyFrame | pl.DataFrame | None = None,
    runs: pl.LazyFrame | pl.DataFrame | None = None,
    *,
    config: AuditConfig,
    as_of: TimeArg | None = None,
    poll_state: pl.LazyFrame | pl.DataFrame | None = None,
    extra_tables: Mapping[str, pl.LazyFrame | pl.DataFrame] | None = None,
) -> Audit:
    """Return the Audit of in-memory frames: the pure core of `analyze` (no I/O, no clock).

    `as_of` (the moment unsettled tasks are aged and censored at) defaults to the latest
    timestamp in `results`; a time without a zone is UTC (see `as_utc`). `extra_tables` (e.g.
    `chain_txs`, `billing_usage`) reach the checks that other features register.
    """
    res = _lazy(results, RESULTS_SCHEMA)
    subs = _lazy(submissions, SUBMISSIONS_SCHEMA)
    obs = _lazy(observations, {c: RESULTS_SCHEMA.get(c, pl.String()) for c in _OBS_COLUMNS} | {
        "run_id": pl.String(), "source": pl.String(), "observed_at": RESULTS_SCHEMA["created_at"],
        "http_status": pl.Int16()})  # fmt: skip
    run_frame = _lazy(runs, {"run_id": pl.String(), "command": pl.String(),
                             "started_at": RESULTS_SCHEMA["created_at"], "status": pl.String(),
                             "stats": pl.String()})  # fmt: skip
    state = _lazy(poll_state, {"task_id": pl.String(), "state": pl.String(),
                               "attempts": pl.Int64()})  # fmt: skip
    as_of = as_utc(as_of, "as_of") or _default_as_of(res)

    tasks_df = enrich_tasks(res, subs).collect()
    tasks = tasks_df.lazy()
    slo = config.slo_seconds
    tol = config.levels("confidence.neither_formula", _registered_default()).fail or 1e-6
    frames: dict[str, pl.DataFrame] = {
        "latency_overall": latency.summarize_latency(tasks, slo_seconds=slo),
    }
    for by in ("day", "hour", "threshold", "worker_count", "task_type"):
        frames[f"latency_by_{by}"] = latency.summarize_latency(tasks, slo_seconds=slo, by=by)
    frames["latency_histogram"] = latency.latency_histogram(tasks)
    frames["latency_ecdf"] = latency.latency_ecdf(tasks)
    frames["survival"] = latency.survival_curve(tasks, as_of=as_of)
    frames["ageing"] = latency.ageing_buckets(tasks, as_of=as_of)
    frames["created_after_as_of"] = latency.created_after_as_of(tasks, as_of=as_of)
    frames["confidence_distribution"] = consensus.confidence_distribution(tasks)
    frames["agreement_overall"] = consensus.agreement_rates(tasks)
    frames["agreement_by_label"] = consensus.agreement_rates(tasks, by="label")
    frames["agreement_by_threshold"] = consensus.agreement_rates(tasks, by="threshold")
    frames["formula_fit"] = consensus.formula_fit(tasks, tolerance=tol)
    frames["invariants"] = consensus.consensus_invariants(tasks)
    frames["margins"] = consensus.margin_rates(tasks)
    frames["cost_comparison"] = costs.cost_comparison(tasks, config.costs)
    frames["unknown_costs"] = costs.unknown_costs(tasks)
    frames["txid_health"] = costs.txid_health(tasks)
    # under a window, each txid with a task in it over all its tasks in the store
    from asg_audit.reconcile import OUTSIDE_TASKS, shared_txids_store_wide

    outside = (extra_tables or {}).get(OUTSIDE_TASKS)
    frames["shared_txids"] = shared_txids_store_wide(
        tasks, outside.lazy() if outside is not None else None
    )
    frames["spend_by_day"] = costs.spend_by_period(tasks, every="1d")
    frames["spend_by_month"] = costs.spend_by_period(tasks, every="1mo")
    frames["cost_model_fit"] = costs.cost_model_fit(
        tasks, costs.candidate_models(tasks, config.costs), configured=config.costs
    )
    frames["polls_per_task"] = collection.polls_per_task(obs, state)
    frames["detection_delay"] = collection.detection_delay(tasks, obs)
    frames["http_by_run"] = collection.http_errors_by_run(obs, run_frame)
    frames["source_coverage"] = collection.source_coverage(tasks)
    frames["tracked_coverage"] = collection.tracked_coverage(tasks, subs, state)
    frames["webhook_poll_disagreements"] = collection.webhook_poll_disagreements(obs)

    frames.update(_chain_billing_frames(tasks, extra_tables or {}))
    if (unused := (extra_tables or {}).get("unused_input")) is not None:
        frames["unused_input"] = unused.lazy().collect()
    frames = {name: _plain_strings(frame) for name, frame in frames.items()}

    tables: dict[str, pl.LazyFrame | pl.DataFrame] = {
        "results": tasks,
        "submissions": subs,
        "observations": obs,
        "runs": run_frame,
        "poll_state": state,
        **(extra_tables or {}),
    }
    ctx = CheckContext(tables, config=config, as_of=as_of, tasks=tasks_df, frames=frames)
    findings = run_checks(ctx)
    return Audit(
        frames=frames, findings=findings, config=config, as_of=as_of, _counts=_count_tasks(tasks)
    )


def _count_tasks(tasks: pl.LazyFrame) -> pl.DataFrame:
    """Return the task counts and mean confidence `summary()` starts from (one row)."""
    return tasks.select(
        pl.len().alias("tasks"),
        pl.col("is_settled").sum().alias("settled"),
        (~pl.col("is_settled") & pl.col("status").is_not_null()).sum().alias("unsettled"),
        # still on their way (spec §4): pending -> in_progress -> verified -> settled
        pl.col("status").cast(pl.String).is_in(_IN_FLIGHT).sum().alias("pending"),
        # statuses outside the documented four (failed, timed_out, ...): final or not,
        # the spec does not say; kept and reported on their own, not as pending
        (
            pl.col("status").is_not_null()
            & ~pl.col("status").cast(pl.String).is_in(list(DOCUMENTED_STATUSES))
        )
        .sum()
        .alias("other_status"),
        stable_mean(pl.col("confidence").filter(~pl.col("confidence").is_nan())).alias(
            "confidence_mean"
        ),
    ).collect()


def _plain_strings(frame: pl.DataFrame) -> pl.DataFrame:
    """Return a frame with categorical columns (group keys of the store's task frame) as text."""
    cats = [n for n, t in frame.schema.items() if isinstance(t, pl.Categorical | pl.Enum)]
    return frame.with_columns(pl.col(cats).cast(pl.String)) if cats else frame


def _chain_billing_frames(
    tasks: pl.LazyFrame, extra: Mapping[str, pl.LazyFrame | pl.DataFrame]
) -> dict[str, pl.DataFrame]:
    """Return the chain and billing frames the report shows, only when that data exists."""
    out: dict[str, pl.DataFrame] = {}
    chain = extra.get("chain_txs")
    chain_df = chain.lazy().collect() if chain is not None else None
    if chain_df is not None and chain_df.height and "status" in chain_df.columns:
        from asg_audit.reconcile import OUTSIDE_TASKS, chain_coverage

        by_status = chain_df.group_by("status").agg(pl.len().alias("txids"))
        out["chain_status"] = by_status.sort("status")
        outside = extra.get(OUTSIDE_TASKS)
        out["chain_coverage"] = chain_coverage(
            tasks, chain_df.lazy(), outside=outside.lazy() if outside is not None else None
        )
        fees = extra.get("fee_coverage")
        if fees is not None:
            # which fees chain.fee_rate could check (`proves`: exact, or not checkable and
            # why) and how many txids each (`_fee_coverage_table`)
            out["fee_coverage"] = fees.lazy().collect()
    usage = extra.get("billing_usage")
    usage_df = usage.lazy().collect() if usage is not None else None
    if usage_df is not None and usage_df.height:
        keep = ("month", "tier", "tasks_settled", "total_cost_sats", "worker_payouts_sats",
                "platform_fee_sats")  # fmt: skip
        out["billing_usage"] = usage_df.select(c for c in keep if c in usage_df.columns).sort(
            "month"
        )
    window = extra.get("billing_window")
    if window is not None:
        # which months billing.vs_results compared under --since/--until, and why not the others
        out["billing_window"] = window.lazy().collect()
    return out


def _registered_default() -> Any:
    from asg_audit.checks import registered_checks

    return registered_checks()["confidence.neither_formula"].default


# Result columns the analyses and checks use, read as they are. The wide list columns are not
# read: `sources` and the submission's `options` become flags in DuckDB (see _RESULTS_SQL);
# shape, observation_count and last_seen_at stay in the store.
_RESULT_COLUMNS: Final = (
    "task_id", "status", "consensus_label", "confidence", "worker_count", "agreement_count",
    "bsv_txid", "cost_sats", "cost_unknown", "settled_at", "delivered_at", "first_seen_at",
    "settled_seen_at", "flags", "conflict_count",
)  # fmt: skip
# Low-cardinality strings, held as categoricals (4 bytes a task instead of a 16-byte view).
_CATEGORICAL: Final = ("status", "consensus_label", "task_type")
_SUBMISSION_COLUMNS: Final = (
    "task_id",
    "task_type",
    "consensus_threshold",
    "options",
    "created_at",
)
# Options known (non-empty) and label known: "label in options" can be tested.
_LABEL_TESTABLE_SQL: Final = "coalesce(len(s.options) > 0 AND r.consensus_label IS NOT NULL, false)"
_LABEL_OUTSIDE_SQL: Final = (
    "coalesce(len(s.options) > 0 AND r.consensus_label IS NOT NULL"
    " AND NOT list_contains(s.options, r.consensus_label), false)"
)
# The enriched task frame's inputs, joined and narrowed where the data lives (the store keeps
# one submission per task id: `track` upserts). Derived columns computed here carry the same
# meaning as in `enrich_tasks`, which keeps them: `options` is kept only where the label is
# outside them (the one place it is shown), so whether the label could be tested is a flag.
_RESULTS_SQL: Final = (
    "SELECT {cols}, coalesce(r.task_type, s.task_type) AS task_type,"
    " coalesce(r.created_at, s.created_at) AS created_at, s.consensus_threshold,"
    f" {_LABEL_TESTABLE_SQL} AS label_testable,"
    f" {_LABEL_OUTSIDE_SQL} AS label_outside_options,"
    f" CASE WHEN {_LABEL_OUTSIDE_SQL} THEN s.options END AS options,"
    # (two list_contains: list_has_any takes a second more on 10M tasks)
    " coalesce(list_contains(r.sources, 'poll') OR list_contains(r.sources, 'status'), false)"
    " AS seen_by_poll,"
    " coalesce(list_contains(r.sources, 'webhook'), false) AS seen_by_webhook,"
    " coalesce(list_contains(r.sources, 'file'), false) AS seen_by_file"
    " FROM results r LEFT JOIN {subs} s ON s.task_id = r.task_id{where}"
)
_NO_SUBMISSIONS_SQL: Final = (
    "(SELECT NULL::VARCHAR AS task_id, NULL::VARCHAR AS task_type,"
    " NULL::INTEGER AS consensus_threshold, NULL::VARCHAR[] AS options,"
    " NULL::TIMESTAMPTZ AS created_at WHERE false)"
)
_BATCH_ROWS: Final = 1_000_000


def _window_sql(
    column: str, since: datetime | None, until: datetime | None
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if since is not None:
        clauses.append(f"{column} >= ?")
        params.append(since)
    if until is not None:
        clauses.append(f"{column} < ?")
        params.append(until)
    return " AND ".join(clauses), params


def _fetch(
    con: Any, sql: str, params: list[Any], *, categorical: tuple[str, ...] = ()
) -> pl.DataFrame:
    """Return a query's rows as a polars frame, converted one Arrow batch at a time.

    Batch by batch, so that only one batch is ever held twice (as Arrow and as polars), and
    low-cardinality strings become categoricals before the next batch arrives.
    """
    reader = con.sql(sql, params=params or None).to_arrow_reader(_BATCH_ROWS)
    try:
        parts: list[pl.DataFrame] = []
        # A plain loop (a comprehension's own frame would hold the reader in a traceback).
        for batch in reader:
            parts.append(_narrow(pl.from_arrow(batch), categorical))  # type: ignore[arg-type]
        if not parts:
            empty = pl.from_arrow(reader.schema.empty_table())
            parts = [_narrow(empty, categorical)]  # type: ignore[arg-type]
    finally:
        # An open reader keeps the whole DuckDB database (and its file lock) alive after its
        # connection is closed: close it now, a KeyboardInterrupt between batches included.
        reader.close()
    return pl.concat(parts, rechunk=False)


def _narrow(frame: pl.DataFrame, categorical: tuple[str, ...]) -> pl.DataFrame:
    cats = [c for c in categorical if c in frame.columns and frame[c].dtype == pl.String]
    return frame.with_columns(pl.col(cats).cast(pl.Categorical)) if cats else frame


# A task's creation time, as the window reads it: the result's `created_at`, else the tracked
# submission's, else (a result nobody says the creation of: an untracked task known from a
# webhook delivery) its `settled_at`, then its delivery's `timestamp`, which follow creation by
# seconds to minutes, and only then when it was first seen (an old delivery log ingested today
# would otherwise land in today's window). `{r}` and `{s}` are the aliases of `results` and
# `submissions` in the query.
_CREATED_SQL: Final = (
    "coalesce({r}.created_at, {s}.created_at, {r}.settled_at, {r}.delivered_at, {r}.first_seen_at)"
)


def _created_window(
    since: datetime | None, until: datetime | None, *, r: str = "r", s: str = "s"
) -> tuple[str, list[Any]]:
    """Return the SQL condition "created in [since, until)" on a result/submission join."""
    return _window_sql(_CREATED_SQL.format(r=r, s=s), since, until)


def _read_tables(
    store: Store, cursors: list[Any], *, since: datetime | None, until: datetime | None
) -> dict[str, pl.LazyFrame]:
    """Return the tables the audit reads; results come joined with their submissions.

    `since`/`until` keep the tasks created in the window (`_CREATED_SQL`: the result's
    created_at, else the submission's, else settled_at, delivered_at, first seen), results and
    submissions alike, and
    the observations and poll state of those tasks, all filtered in DuckDB.
    """
    present = set(store.tables())
    subs = "submissions" if "submissions" in present else _NO_SUBMISSIONS_SQL
    where, params = _created_window(since, until)
    out: dict[str, pl.LazyFrame] = {}
    for name in TABLES:
        if name not in present:
            continue
        if name == "results":
            sql = _RESULTS_SQL.format(
                cols=", ".join(f'r."{c}"' for c in _RESULT_COLUMNS),
                subs=subs,
                where=f" WHERE {where}" if where else "",
            )
            # The one big frame of the audit: read once, narrow, batch by batch.
            out[name] = _fetch(store.con, sql, params, categorical=_CATEGORICAL).lazy()
        elif name == "submissions":
            # Lazy from its own cursor: the checks read a column or two of it, if anything.
            cols = ", ".join(f's."{c}"' for c in _SUBMISSION_COLUMNS)
            cursor = store.con.cursor()
            cursor.execute("SET TimeZone = 'UTC'")  # the store's convention, per connection
            cursors.append(cursor)
            sql = f"SELECT {cols} FROM submissions s"
            if where:
                # windowed on the task's creation time, as the results are (a result's own
                # created_at wins over the submission's)
                sql += (
                    " LEFT JOIN (SELECT task_id, created_at, settled_at, delivered_at,"
                    " first_seen_at FROM results) r"
                    f" ON r.task_id = s.task_id WHERE {where}"
                )
            out[name] = cursor.sql(sql, params=params or None).pl(lazy=True)
        else:
            # Only the observation columns the analyses use: raw bodies can be most of it.
            cols = ", ".join(f'"{c}"' for c in _OBS_COLUMNS) if name == "observations" else "*"
            sql, args = f'SELECT {cols} FROM "{name}"', []
            if name in ("observations", "poll_state") and where:
                sql += f" WHERE task_id IN ({_WINDOW_TASK_IDS_SQL.format(subs=subs, where=where)}"
                if "submissions" in present:
                    sql += (
                        " UNION SELECT s.task_id FROM submissions s LEFT JOIN results r"
                        f" ON r.task_id = s.task_id WHERE {where}"
                    )
                    args += params
                if "poll_state" in present:
                    # A task polled for (`collect --task-ids`) that neither a result nor a
                    # submission dates: when it was first answered 404, else last polled.
                    polled, polled_params = _window_sql(_POLLED_SQL, since, until)
                    sql += _POLLED_ONLY_SQL.format(
                        subs=" AND p.task_id NOT IN (SELECT task_id FROM submissions)"
                        if "submissions" in present
                        else "",
                        where=polled,
                    )
                    args += polled_params
                sql += ")"
                args = params + args
            out[name] = _fetch(store.con, sql, args).lazy()
    if {"results", "observations"} <= present:
        # What changed in each result changed after settlement (a few rows): for the message
        # of `result.changed_after_settlement`, which joins them to the window's tasks.
        out[RESULT_CHANGES] = _fetch(store.con, CHANGES_SQL, []).lazy()
    return out


# The time a window reads for a task known only from its poll state, and those tasks' ids.
_POLLED_SQL: Final = "coalesce(p.first_404_at, p.updated_at)"
_POLLED_ONLY_SQL: Final = (
    " UNION SELECT p.task_id FROM poll_state p"
    " WHERE p.task_id NOT IN (SELECT task_id FROM results){subs} AND {where}"
)
_WINDOW_TASK_IDS_SQL: Final = (
    "SELECT r.task_id FROM results r LEFT JOIN {subs} s ON s.task_id = r.task_id WHERE {where}"
)


def check_window(
    since: TimeArg | None, until: TimeArg | None, *, names: tuple[str, str] = ("--since", "--until")
) -> None:
    """Raise ConfigError when `since` is not before `until` (an empty window audits nothing).

    Also when either is not a time (`as_utc`); one without a zone is UTC. `names` are what the
    message calls them: the command line's flags, or a function's arguments.
    """
    since, until = as_utc(since, "since"), as_utc(until, "until")
    if since is not None and until is not None and since >= until:
        raise ConfigError(
            f"{names[0]} ({since.isoformat()}) must be before {names[1]} ({until.isoformat()}):"
            " the window [since, until) would be empty"
        )


def _month_start(month: str) -> datetime:
    return datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)


def _next_month(start: datetime) -> datetime:
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


def billing_window(months: list[str], since: TimeArg | None, until: TimeArg | None) -> pl.DataFrame:
    """Return, per billed month, whether it is compared with the results and why (or why not).

    A month's bill covers every task settled in it; a window keeps tasks by creation time, so
    only a month wholly inside `[since, until)` is compared (with every stored result settled
    in that month, read outside the window); a month the window cuts would compare a whole
    month's bill with part of its tasks.
    """
    since, until = as_utc(since, "since"), as_utc(until, "until")
    rows = []
    for month in sorted(set(months)):
        start = _month_start(month)
        end = _next_month(start)
        inside = (since is None or since <= start) and (until is None or end <= until)
        outside = (since is not None and end <= since) or (until is not None and until <= start)
        if inside:
            reason = "month wholly inside the window: compared with every result settled in it"
        elif outside:
            reason = "skipped: the window does not cover this month"
        else:
            reason = "skipped: the window covers only part of this month"
        rows.append({"month": month, "compared": inside, "reason": reason})
    schema = {"month": pl.String, "compared": pl.Boolean, "reason": pl.String}
    return pl.DataFrame(rows, schema=schema)


_SETTLED_BY_MONTH_SQL: Final = (
    "SELECT strftime(settled_at AT TIME ZONE 'UTC', '%Y-%m') AS month, count(*) AS our_tasks,"
    " coalesce(sum(cost_sats), 0) AS our_cost FROM results"
    " WHERE status = 'settled' AND settled_at IS NOT NULL GROUP BY 1"
)


def _outside_tasks(
    store: Store, tables: dict[str, pl.LazyFrame], since: datetime | None, until: datetime | None
) -> None:
    """Add the tasks outside the window that store-wide judgements need (`OUTSIDE_TASKS`).

    Every task sharing a txid with a task in the window (a txid is judged on all its tasks),
    and every task settled in a billed month the window wholly covers (the month-level billing
    checks compare a whole month). Read through the same SQL as the window's tasks, and
    enriched the same way; only when a window is set.
    """
    from asg_audit.reconcile import OUTSIDE_COLUMNS, OUTSIDE_TASKS

    if (since is None and until is None) or "results" not in tables:
        return
    present = set(store.tables())
    subs = "submissions" if "submissions" in present else _NO_SUBMISSIONS_SQL
    where, params = _created_window(since, until)
    inner, inner_params = _created_window(since, until, r="r2", s="s2")
    wanted = (
        "(r.bsv_txid IS NOT NULL AND lower(r.bsv_txid) IN (SELECT lower(r2.bsv_txid)"
        f" FROM results r2 LEFT JOIN {subs} s2 ON s2.task_id = r2.task_id"
        f" WHERE r2.bsv_txid IS NOT NULL AND {inner}))"
    )
    args = params + inner_params
    window = tables.get("billing_window")
    if window is not None:
        months = window.filter(pl.col("compared")).collect()["month"].to_list()
        if months:
            wanted += (
                " OR (r.status = 'settled' AND strftime(r.settled_at AT TIME ZONE 'UTC', '%Y-%m')"
                f" IN ({', '.join('?' for _ in months)}))"
            )
            args += [str(m) for m in months]
    sql = _RESULTS_SQL.format(
        cols=", ".join(f'r."{c}"' for c in _RESULT_COLUMNS),
        subs=subs,
        where=f" WHERE NOT coalesce({where}, false) AND ({wanted})",
    )
    rows = _fetch(store.con, sql, args)
    tables[OUTSIDE_TASKS] = enrich_tasks(rows.lazy()).select(OUTSIDE_COLUMNS).collect().lazy()


def _billing_window_tables(
    store: Store, tables: dict[str, pl.LazyFrame], since: datetime | None, until: datetime | None
) -> None:
    """Add the frames the month-level billing checks need when a window is set.

    `billing_window` says which billed months (of the usage and the invoices) the window
    wholly covers: the only ones judged. `billing_results_by_month` is every result settled
    in each month, for `billing.vs_results`.
    """
    if since is None and until is None:
        return
    months: list[str] = []
    for name in ("billing_usage", "billing_invoices"):
        table = tables.get(name)
        if table is not None and "month" in table.collect_schema().names():
            found = table.select(pl.col("month").drop_nulls()).collect()["month"].to_list()
            months += [str(m) for m in found]
    if not months:
        return
    tables["billing_window"] = billing_window(months, since, until).lazy()
    tables["billing_results_by_month"] = _fetch(store.con, _SETTLED_BY_MONTH_SQL, []).lazy()


def analyze(
    db: str | Path | Store,
    *,
    since: TimeArg | None = None,
    until: TimeArg | None = None,
    config: AuditConfig | None = None,
    as_of: TimeArg | None = None,
    wait_seconds: float = 0.0,
) -> Audit:
    """Return the Audit of a store: every analysis and check, no rendering.

    `db` is a path to the DuckDB file (opened read-only) or an open store. `since`/`until`
    restrict the audit to tasks created in `[since, until)`. `as_of` (default: `until` when it
    is past, else now) is when unsettled tasks are aged and censored. Each is a datetime (one
    without a zone is UTC, as on the command line), a date or ISO 8601 text; the Audit holds
    them in UTC.
    Raises ConfigError for anything else, or for an empty window. A store being written to by
    another process is waited for up to `wait_seconds` (a finite number, 0 or more; for a path
    only), then StoreBusyError.
    """
    from asg_audit.interrupts import is_interrupt
    from asg_audit.store import Store, open_store

    if not isinstance(db, str | os.PathLike | Store):
        raise TypeError(
            "analyze db: expected a path (str or Path) or an open store (open_store()),"
            f" got {type(db).__name__}"
        )
    if config is None:
        config = AuditConfig()
    elif not isinstance(config, AuditConfig):
        raise TypeError(
            "analyze config: expected an AuditConfig (asg_audit.load_config()) or None,"
            f" got {type(config).__name__}"
        )
    check_wait_seconds(wait_seconds, "analyze wait_seconds")
    since, until = as_utc(since, "since"), as_utc(until, "until")
    check_window(since, until, names=("analyze since", "analyze until"))
    # Unsettled tasks are aged at `until`, but never past now: a window ending in the future
    # ("this month") aged a task created a minute ago by weeks, and failed it as stuck.
    now = datetime.now(UTC)
    as_of = as_utc(as_of, "as_of") or (now if until is None else min(until, now))
    handled = sys.exc_info()[1]  # the caller's exception being handled, if any: not ours
    try:
        if isinstance(db, Store):
            audit = _analyze_store(db, since=since, until=until, config=config, as_of=as_of)
        else:
            with open_store(db, read_only=True, wait_seconds=wait_seconds) as store:
                audit = _analyze_store(
                    store, since=since, until=until, config=config, as_of=as_of, owned=True
                )
    except BaseException as exc:
        # Whoever keeps the exception (IPython keeps the last traceback) keeps the frames it
        # went through, and their locals: an Arrow reader or a relation there keeps the DuckDB
        # database, and its file lock, alive after the store is closed. Let them go.
        _clear_frames(exc, handled)
        # A Ctrl-C (or a notebook's "interrupt kernel") that lands in a DuckDB statement comes
        # out as DuckDB's `RuntimeError: Query interrupted` or `InterruptException`: raise it
        # as the KeyboardInterrupt it is, so that `except Exception` never swallows it. Any
        # other error goes through unchanged.
        if isinstance(exc, Exception) and is_interrupt(exc):
            raise KeyboardInterrupt(f"analyze interrupted ({exc})") from None
        raise
    audit.since, audit.until = since, until
    return audit


def _clear_frames(exc: BaseException, handled: BaseException | None) -> None:
    """Clear the locals of the finished frames in `exc`'s traceback, and in those of the
    exceptions it was raised while handling, up to `handled` (the caller's own, left alone).

    The traceback keeps its file names and line numbers; the frame still running (`analyze`'s
    own) is left as it is (`traceback.clear_frames` skips it).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and current is not handled and id(current) not in seen:
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        current = current.__cause__ or current.__context__


def _analyze_store(
    store: Store,
    *,
    since: datetime | None,
    until: datetime | None,
    config: AuditConfig,
    as_of: datetime,
    owned: bool = False,
) -> Audit:
    cursors: list[Any] = []
    try:
        tables = _read_tables(store, cursors, since=since, until=until)
        _fee_coverage_table(store, tables, config)
        _billing_window_tables(store, tables, since, until)
        _outside_tasks(store, tables, since, until)
        _unused_input_table(store, tables)
        if owned:
            _release_cache(store)
        main = ("results", "submissions", "observations", "runs", "poll_state")
        return analyze_frames(
            tables.get("results"),  # type: ignore[arg-type]
            tables.get("submissions"),
            tables.get("observations"),
            tables.get("runs"),
            config=config,
            as_of=as_of,
            poll_state=tables.get("poll_state"),
            extra_tables={k: v for k, v in tables.items() if k not in main},
        )
    finally:
        for cursor in cursors:
            cursor.close()


def _fee_coverage_table(store: Store, tables: dict[str, pl.LazyFrame], config: AuditConfig) -> None:
    """Add `fee_coverage` to `tables` when the store holds chain transactions: how many of
    their fees `chain.fee_rate` could check, and why the others could not
    (`chain_verify.fee_coverage`, as `verify-chain` counts them; store-wide, as
    `chain_status`). It reads `chain_parents`, which the frames do not carry: computed here,
    while the store is open."""
    if "chain_txs" not in tables or "chain_parents" not in set(store.tables()):
        return
    from asg_audit.chain_verify import fee_coverage

    fetch_parents = bool(config.chain.get("fetch_parents", False))
    tables["fee_coverage"] = fee_coverage(store.con, fetch_parents=fetch_parents).lazy()


# Records the store holds but no result uses, by kind, source and reason (store-wide, as the
# chain tables: a reject has no task to window it by): rejects (the raw record quarantined),
# and observations kept without a status that are not error answers (a webhook delivery of
# another event than `task.settled`, a 200 with a null status, an exported record without
# one; a 404's body, whatever it holds, is the not-found evidence), which no result reads
# (tester T7: such deliveries were answered "stored" and then appeared nowhere; T8: rejects
# never reached an audit's output).
_UNUSED_INPUT_SQL: Final = """
SELECT 'rejected' AS kind, source, reason AS what, count(*)::BIGINT AS records,
    arg_min(coalesce(origin, '?') || coalesce(':' || origin_line, ''), (observed_at, origin,
        origin_line)) AS first_where,
    arg_min(coalesce(field, ''), (observed_at, origin, origin_line)) AS note,
    min(observed_at) AS first_at, max(observed_at) AS last_at
FROM rejects GROUP BY ALL
UNION ALL
SELECT 'no_status', source, coalesce(shape, '?'), count(*)::BIGINT,
    arg_min(coalesce(task_id, '?') || coalesce(' (' || origin || coalesce(':' || origin_line, '')
        || ')', ''), obs_id),
    arg_min(CASE WHEN source <> 'file' AND json_valid(raw)
        THEN json_extract_string(raw, '$.event') END, obs_id),
    min(observed_at), max(observed_at)
FROM observations WHERE status IS NULL AND shape IS DISTINCT FROM 'error'
    AND coalesce(http_status, 200) BETWEEN 200 AND 299 GROUP BY ALL
ORDER BY kind, source, what
"""
# Webhook deliveries acknowledged and committed but not normalised yet (the receiver was
# killed before its normaliser ran: it normalises them when it starts again), as
# `webhook_writer._LEFTOVERS_SQL` finds them: in no result meanwhile (tester T8).
_UNNORMALISED_SQL: Final = """
SELECT 'unnormalised' AS kind, 'webhook' AS source, 'delivery' AS what,
    count(*)::BIGINT AS records,
    arg_min(coalesce(d.task_id, '?') || ' (delivery ' || d.delivery_id || ')', d.received_at)
        AS first_where,
    NULL::VARCHAR AS note, min(d.received_at) AS first_at, max(d.received_at) AS last_at
FROM webhook_deliveries d
WHERE d.body IS NOT NULL AND d.outcome IN ('stored', 'rejected')
  AND NOT EXISTS (SELECT 1 FROM observations o
                  WHERE o.source = 'webhook' AND o.origin = 'webhook:' || d.body_sha256)
  AND NOT EXISTS (SELECT 1 FROM rejects r
                  WHERE r.source = 'webhook' AND r.origin = 'webhook:' || d.body_sha256)
HAVING count(*) > 0
"""


def _unused_input_table(store: Store, tables: dict[str, pl.LazyFrame]) -> None:
    """Add `unused_input` to `tables`: what `_UNUSED_INPUT_SQL` counts."""
    present = set(store.tables())
    if not {"rejects", "observations"} <= present:
        return
    sql = _UNUSED_INPUT_SQL
    if "webhook_deliveries" in present:
        sql = f"({sql.strip()}) UNION ALL ({_UNNORMALISED_SQL.strip()})"
    tables["unused_input"] = _fetch(store.con, sql, []).lazy()


def _release_cache(store: Store) -> None:
    """Let DuckDB drop the blocks it cached while reading (about 1 GiB on 10M tasks).

    Only on a store `analyze` opened itself: the memory limit is the whole instance's.
    """
    limit = store.con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
    store.con.execute("SET memory_limit = '64MB'")
    store.con.execute(f"SET memory_limit = '{limit}'")


def empty_findings() -> pl.DataFrame:
    """Return an empty findings frame."""
    return pl.DataFrame(schema=FINDINGS_SCHEMA)
