"""Collection-health analyses: empty inputs, polls per task, webhook vs poll."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
from _analyses_frames import T0, result, results_frame

from asg_audit.analyses import collection, enrich_tasks
from asg_audit.audit import analyze_frames
from asg_audit.config import AuditConfig

OBS_SCHEMA = {
    "task_id": pl.String, "run_id": pl.String, "source": pl.String,
    "observed_at": pl.Datetime("us", "UTC"), "http_status": pl.Int16,
    "consensus_label": pl.String, "confidence": pl.Float64, "bsv_txid": pl.String,
    "settled_at": pl.Datetime("us", "UTC"),
}  # fmt: skip


def _obs(rows) -> pl.LazyFrame:
    return pl.DataFrame(rows, schema=OBS_SCHEMA).lazy()


def test_collection_analyses_work_without_collector_data() -> None:
    audit = analyze_frames(results_frame([result("a")]), config=AuditConfig())
    assert audit["polls_per_task"]["tasks"][0] == 0
    assert audit["http_by_run"].height == 0
    assert audit["webhook_poll_disagreements"].height == 0


def test_collection_polls_per_task_counts_poll_observations() -> None:
    at = T0 + timedelta(seconds=5)
    rows = [
        {"task_id": "a", "run_id": "r", "source": "poll", "observed_at": at, "http_status": 202},
        {"task_id": "a", "run_id": "r", "source": "poll", "observed_at": at, "http_status": 200},
        {"task_id": "b", "run_id": "r", "source": "poll", "observed_at": at, "http_status": 429},
    ]
    state = pl.LazyFrame(schema={"task_id": pl.String, "attempts": pl.Int64})
    got = collection.polls_per_task(_obs(rows), state).row(0, named=True)
    assert (got["tasks"], got["polls"], got["max"]) == (2, 3, 2)
    runs = pl.LazyFrame(
        {
            "run_id": ["r"],
            "command": ["collect"],
            "started_at": [T0],
            "status": ["ok"],
            "stats": ['{"requests": 3, "http_429": 1}'],
        }
    )
    by_run = collection.http_errors_by_run(_obs(rows), runs).row(0, named=True)
    assert (by_run["answers"], by_run["http_429"], by_run["run_requests"]) == (3, 1, 3)


def test_collection_webhook_poll_disagreements_name_the_field() -> None:
    s = T0 + timedelta(seconds=47)
    base = {
        "task_id": "a",
        "run_id": "r",
        "observed_at": s,
        "http_status": 200,
        "confidence": 2 / 3,
        "bsv_txid": "x",
        "settled_at": s,
    }
    rows = [
        {**base, "source": "poll", "consensus_label": "cat"},
        {**base, "source": "webhook", "consensus_label": "dog"},
    ]
    got = collection.webhook_poll_disagreements(_obs(rows))
    assert got.rows() == [("a", "consensus_label", "dog", "cat")]


def test_collection_detection_delay_and_coverage() -> None:
    rows = [
        result("a"),
        result("b", sources=["webhook"]),
        result("c", sources=["poll", "webhook"]),
        result("d"),
        result("e"),
        result("f"),
    ]
    tasks = enrich_tasks(results_frame(rows).lazy())
    settled = T0 + timedelta(seconds=47)  # every task's settled_at

    def seen(
        task_id: str, source: str, after_s: float, *, run: str | None = None, settled_at=settled
    ) -> dict:
        return {
            "task_id": task_id,
            "run_id": run,
            "source": source,
            "observed_at": settled + timedelta(seconds=after_s),
            "settled_at": settled_at,
        }

    month = 86_400 * 30
    obs = _obs(
        [
            seen("a", "poll", -9, run="r1", settled_at=None),  # still pending when polled
            seen("a", "poll", 3, run="r1"),  # watched since before it settled: 3 s
            seen("b", "webhook", 5, run="w1"),  # a push: 5 s
            seen("b", "poll", 20, run="r1"),  # later than the delivery
            seen("c", "file", month),  # an export read a month later: not a detection
            # settled before the run that found it began (its first answer, month + 1 s):
            # when we started, not how fast we detect
            seen("d", "file", month - 100),
            seen("d", "poll", month + 2, run="r2"),
            seen("f", "poll", month + 1, run="r2"),
            # first polled 30 s after settling, by a run that had started before: the
            # schedule chose to wait, a real detection delay
            seen("e", "poll", 30, run="r1"),
        ]
    )
    got = collection.detection_delay(tasks, obs)
    assert got.select("tasks", "p50_s", "max_s", "unwatched").row(0) == (3, 5.0, 30.0, 2)
    files_only = collection.detection_delay(tasks, _obs([seen("c", "file", 86_400)]))
    assert files_only["tasks"][0] == 0 and files_only["unwatched"][0] == 0
    got = {seen: (n, files) for seen, n, files in collection.source_coverage(tasks).rows()}
    assert got == {"poll and webhook": (1, 0), "poll only": (4, 0), "webhook only": (1, 0)}
    # a task polled and also read from an export is "poll only" (no webhook), and counted as
    # in ingested files too (tester A3: the table hid that every task was also in files)
    rows[0]["sources"] = ["file", "poll"]
    rows.append(result("g", sources=["file"]))
    tasks = enrich_tasks(results_frame(rows).lazy())
    got = {seen: (n, files) for seen, n, files in collection.source_coverage(tasks).rows()}
    assert got == {
        "file only": (1, 1),
        "poll and webhook": (1, 0),
        "poll only": (4, 1),
        "webhook only": (1, 0),
    }


def test_collection_report_table_names_the_settlements_we_did_not_watch() -> None:
    from asg_audit.report.render import _collection_frame

    polls = pl.DataFrame({"tasks": [0]})
    delay = pl.DataFrame(
        {"tasks": [3], "mean_s": [12.0], "p50_s": [5.0], "p90_s": [30.0], "max_s": [30.0]}
    ).with_columns(unwatched=pl.lit(2, pl.UInt32))
    table = _collection_frame({"polls_per_task": polls, "detection_delay": delay})
    assert table.select("measure", "tasks").rows() == [
        ("detection delay", 3),
        ("settled before we watched", 2),
    ]
