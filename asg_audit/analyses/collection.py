"""Collection health: polls per task, detection delay, HTTP errors per run, webhook vs poll.

Inputs may be empty (no collector run yet, no webhook received): every function then returns
its frame with zero counts or no rows, never an error.
"""

from __future__ import annotations

from typing import Final

import polars as pl

from asg_audit.analyses._tasks import latency_seconds, stable_mean
from asg_audit.model import Source

__all__ = [
    "COMPARED_FIELDS",
    "POLLED_TO_END",
    "detection_delay",
    "http_errors_by_run",
    "polls_per_task",
    "source_coverage",
    "tracked_coverage",
    "tracked_ids",
    "webhook_poll_disagreements",
    "without_status",
]

# Fields both a webhook delivery and a polled result carry.
COMPARED_FIELDS: Final = ("consensus_label", "confidence", "bsv_txid", "settled_at")
_POLL_SOURCES: Final = ("poll", "status")
# poll_state states after which the collector asks no more (polltask.FINAL_STATES and the 404
# rules' not_found / expired): a tracked task in one, never seen with a status, is unknown to
# the Gateway (`task.unknown`); in any other state (pending), or none, it waits for a collect.
POLLED_TO_END: Final = ("done", "failed", "not_found", "expired")


def polls_per_task(observations: pl.LazyFrame, poll_state: pl.LazyFrame) -> pl.DataFrame:
    """Return polled tasks, total polls, and mean / p50 / p90 / max polls per task.

    Uses `poll_state.attempts` (exact even when repeated 202 answers were counted rather than
    stored) and falls back to counting poll observations when no poll state exists.
    """
    from_state = poll_state.select(pl.col("attempts").cast(pl.Int64).alias("polls"))
    from_obs = (
        observations.filter(pl.col("source") == "poll")
        .group_by("task_id")
        .agg(pl.len().cast(pl.Int64).alias("polls"))
        .select("polls")
    )
    per_task = from_state.collect()
    if per_task.height == 0:
        per_task = from_obs.collect()
    p = pl.col("polls")
    return per_task.select(
        pl.len().alias("tasks"),
        p.sum().alias("polls"),
        p.mean().alias("mean"),
        p.quantile(0.5, interpolation="linear").alias("p50"),
        p.quantile(0.9, interpolation="linear").alias("p90"),
        p.max().alias("max"),
    )


def tracked_ids(*frames: pl.LazyFrame) -> pl.LazyFrame:
    """Return the distinct task ids (`task_id`, text) of `frames`, in order: the tracked tasks
    of the submissions and poll state."""
    ids = pl.col("task_id").cast(pl.String)
    return pl.concat([f.select(ids) for f in frames], how="vertical").unique(maintain_order=True)


def without_status(ids: pl.LazyFrame, tasks: pl.LazyFrame) -> pl.LazyFrame:
    """Return those of `ids` the store holds no status of (no result, or one without a status:
    an error answer only). `task.not_collected` and `task.unknown` judge these."""
    seen = tasks.filter(pl.col("status").is_not_null()).select(pl.col("task_id").cast(pl.String))
    return ids.join(seen, on="task_id", how="anti")


def tracked_coverage(
    tasks: pl.LazyFrame, submissions: pl.LazyFrame, poll_state: pl.LazyFrame
) -> pl.DataFrame:
    """Return one row: `tracked` (the task ids submitted or polled for), `collected` (those the
    store holds a status of), `not_collected` (the others: not polled yet, still waiting,
    every poll failed, or answered 404) and `unknown` (those of them polled to the end,
    `POLLED_TO_END`: the Gateway does not know them, and another collect does not help). A
    result never tracked counts in none of them.
    """
    tracked = tracked_ids(submissions, poll_state)
    missing = without_status(tracked, tasks)
    ended = poll_state.filter(pl.col("state").is_in(POLLED_TO_END)).select(
        pl.col("task_id").cast(pl.String)
    )
    out = pl.concat(
        [
            tracked.select(pl.len().cast(pl.Int64).alias("tracked")),
            missing.select(pl.len().cast(pl.Int64).alias("not_collected")),
            missing.join(ended.unique(), on="task_id", how="semi").select(
                pl.len().cast(pl.Int64).alias("unknown")
            ),
        ],
        how="horizontal",
    ).collect()
    return out.select(
        "tracked",
        (pl.col("tracked") - pl.col("not_collected")).alias("collected"),
        "not_collected",
        "unknown",
    )


def detection_delay(tasks: pl.LazyFrame, observations: pl.LazyFrame) -> pl.DataFrame:
    """Return how long after `settled_at` the collector or the webhook receiver first saw each
    settlement: its first poll or delivery that carried a settlement.

    Only settlements that happened while we were watching count: a webhook delivery always
    (the provider pushed it), a poll when the task was already observed live before it
    settled, or when the collector run that found it had started (its first stored answer)
    by then. A task that settled before any run could poll it (a history collected after the
    fact, or a settlement first read from an exported file and confirmed by a later poll)
    says when we started, not how fast settlements are detected; so does a settlement seen
    only in ingested files. `unwatched` counts the settled tasks left out for that reason.
    """
    live = observations.filter(pl.col("source").is_in((Source.POLL.value, Source.WEBHOOK.value)))
    first = live.group_by("task_id").agg(pl.col("observed_at").min().alias("first_live_at"))
    run_start = (
        live.filter(pl.col("run_id").is_not_null())
        .group_by("run_id")
        .agg(pl.col("observed_at").min().alias("run_start"))
    )
    detected = (
        live.filter(pl.col("settled_at").is_not_null())
        .sort("observed_at")
        .group_by("task_id")
        .agg(
            pl.col("observed_at").first().alias("detected_at"),
            pl.col("source").first().alias("detected_by"),
            pl.col("run_id").first().alias("detected_run"),
        )
        .join(run_start, left_on="detected_run", right_on="run_id", how="left")
        .join(first, on="task_id", how="left")
    )
    settled = tasks.filter(pl.col("is_settled")).join(detected, on="task_id", how="inner")
    watched = (
        (pl.col("detected_by") == Source.WEBHOOK.value)
        | (pl.col("first_live_at") < pl.col("settled_at"))
        | (pl.col("run_start") <= pl.col("settled_at"))
    ).fill_null(False)
    d = latency_seconds("settled_at", "detected_at")
    return (
        settled.select(d.alias("delay_s"), watched.alias("watched"))
        .select(
            pl.col("watched").sum().cast(pl.UInt32).alias("tasks"),
            stable_mean(pl.col("delay_s").filter("watched")).alias("mean_s"),
            pl.col("delay_s")
            .filter("watched")
            .quantile(0.5, interpolation="linear")
            .alias("p50_s"),
            pl.col("delay_s")
            .filter("watched")
            .quantile(0.9, interpolation="linear")
            .alias("p90_s"),
            pl.col("delay_s").filter("watched").max().alias("max_s"),
            (~pl.col("watched")).sum().cast(pl.UInt32).alias("unwatched"),
        )
        .collect()
    )


def http_errors_by_run(observations: pl.LazyFrame, runs: pl.LazyFrame) -> pl.DataFrame:
    """Return per run: stored answers, 404s, 429s and 5xx, plus the run's own counters.

    The run's `stats` JSON counters (`requests`, `http_429`, `http_5xx`) count answers that
    were not stored one by one; both views are shown, neither is summed into the other.
    """
    code = pl.col("http_status")
    stored = (
        observations.filter(pl.col("run_id").is_not_null())
        .group_by("run_id")
        .agg(
            pl.len().alias("answers"),
            (code == 404).sum().alias("http_404"),
            (code == 429).sum().alias("http_429"),
            ((code >= 500) & (code < 600)).sum().alias("http_5xx"),
        )
    )
    counters = runs.select(
        "run_id",
        "command",
        "started_at",
        "status",
        *(
            pl.col("stats")
            .str.json_path_match(f"$.{key}")
            .cast(pl.Int64, strict=False)
            .alias(f"run_{key}")
            for key in ("requests", "http_429", "http_5xx")
        ),
    )
    return (
        counters.join(stored, on="run_id", how="full", coalesce=True)
        .sort("started_at", "run_id", nulls_last=True)
        .collect()
    )


def source_coverage(tasks: pl.LazyFrame) -> pl.DataFrame:
    """Return how many tasks were seen live by polling only, by webhook only, both, or only in
    ingested files (`seen_by`, `tasks`), and how many of them were in ingested files too
    (`in_files`: "poll only" counts a task polled and also read from an export)."""
    polled, pushed = pl.col("seen_by_poll"), pl.col("seen_by_webhook")
    seen = (
        pl.when(polled & pushed)
        .then(pl.lit("poll and webhook"))
        .when(polled)
        .then(pl.lit("poll only"))
        .when(pushed)
        .then(pl.lit("webhook only"))
        .when(pl.col("seen_by_file"))
        .then(pl.lit("file only"))
        .otherwise(pl.lit("none"))
    )
    return (
        tasks.group_by(seen.alias("seen_by"))
        .agg(
            pl.len().alias("tasks"),
            pl.col("seen_by_file").fill_null(False).sum().cast(pl.UInt32).alias("in_files"),
        )
        .sort("seen_by")
        .collect()
    )


def _latest_settled(observations: pl.LazyFrame, sources: tuple[str, ...]) -> pl.LazyFrame:
    return (
        observations.filter(
            pl.col("source").is_in(list(sources)) & pl.col("settled_at").is_not_null()
        )
        .sort("observed_at")
        .group_by("task_id")
        .agg(pl.col(f).last() for f in COMPARED_FIELDS)
    )


def webhook_poll_disagreements(observations: pl.LazyFrame) -> pl.DataFrame:
    """Return one row per (task, field) where the latest webhook and poll answers differ.

    Values are shown as strings; confidence is compared with a 1e-9 tolerance since a webhook
    may print it differently.
    """
    hook = _latest_settled(observations, ("webhook",))
    poll = _latest_settled(observations, _POLL_SOURCES)
    both = hook.join(poll, on="task_id", how="inner", suffix="_poll")
    frames = []
    for f in COMPARED_FIELDS:
        a, b = pl.col(f), pl.col(f"{f}_poll")
        differs = (a - b).abs() > 1e-9 if f == "confidence" else a != b
        differs = differs.fill_null(a.is_null() != b.is_null())
        frames.append(
            both.filter(differs).select(
                "task_id",
                pl.lit(f).alias("field"),
                a.cast(pl.String).alias("webhook_value"),
                b.cast(pl.String).alias("poll_value"),
            )
        )
    return pl.concat(frames).sort("task_id", "field").collect()
