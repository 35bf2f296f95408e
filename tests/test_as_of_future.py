"""Tasks created after `as_of` are not aged: no negative age in the backlog or the survival curve.

`as_of` is "the moment unsettled tasks are aged and censored at" (README). A task created after
it (the API's clock ahead of ours, or an explicit `as_of` earlier than the data) did not exist
then: it used to be aged negatively (a backlog row "pending <1m, oldest -183.3 d", a
Kaplan-Meier curve starting at t = -1.58e7 s with those tasks at risk). Now the ageing and the
survival curve leave such tasks out, and the report counts them in a note. A settlement after
`as_of` of a task created before it still counts as an event at its latency, as in the latency
figures. Expected figures are computed here by hand from the records, not by the library.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _analyses_frames import txid

from asg_audit.audit import analyze
from asg_audit.ingest_files import ingest_paths
from asg_audit.report import render

AS_OF = datetime(2026, 4, 8, 22, 0, 0, tzinfo=UTC)
# task id, status, created_at, settled_at
_RECORDS: list[tuple[str, str, str, str | None]] = [
    # created at or before as_of
    ("b_p1", "pending", "2026-04-08T21:00:00Z", None),
    ("b_p2", "pending", "2026-04-08T21:59:30Z", None),
    ("b_i1", "in_progress", "2026-04-08T21:50:00Z", None),
    ("b_f1", "failed", "2026-04-08T20:00:00Z", None),
    ("b_v1", "verified", "2026-04-08T22:00:00Z", None),  # exactly at as_of: age 0
    ("b_s1", "settled", "2026-04-08T21:00:00Z", "2026-04-08T21:00:40Z"),
    ("b_s2", "settled", "2026-04-08T21:58:00Z", "2026-04-08T22:05:00Z"),  # settled after as_of
    ("b_s3", "settled", "2026-04-08T21:10:00Z", "2026-04-08T21:11:30Z"),
    # created after as_of
    ("a_p1", "pending", "2026-04-08T22:10:00Z", None),
    ("a_i1", "in_progress", "2026-04-08T23:00:00Z", None),
    ("a_s1", "settled", "2026-04-08T22:30:00Z", "2026-04-08T22:31:00Z"),
    ("a_f1", "failed", "2027-01-01T00:00:00Z", None),
]
_EDGES = (60, 300, 900, 3600, 6 * 3600, 24 * 3600)
_LABELS = ("<1m", "1m-5m", "5m-15m", "15m-1h", "1h-6h", "6h-24h", ">=24h")


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _line(task_id: str, status: str, created: str, settled: str | None) -> str:
    record: dict[str, Any] = {"task_id": task_id, "status": status, "created_at": created}
    if settled is not None:
        record |= {
            "consensus_label": "cat", "confidence": 1.0, "worker_count": 3,
            "agreement_count": 3, "bsv_txid": txid(task_id),
            "settled_at": settled, "cost_sats": 975,
        }  # fmt: skip
    return json.dumps(record) + "\n"


def _store(tmp_path: Path, records: list[tuple[str, str, str, str | None]]) -> Path:
    export = tmp_path / "r.ndjson"
    export.write_text("".join(_line(*r) for r in records))
    db = tmp_path / "s.duckdb"
    ingest_paths(db, [export], progress=False)
    return db


def _expected(as_of: datetime) -> tuple[dict[tuple[str, str], tuple[int, float]], list[tuple]]:
    """Return the ageing {(status, bucket): (tasks, oldest_s)} and the survival rows by hand."""
    ageing: dict[tuple[str, str], tuple[int, float]] = {}
    durations: list[tuple[float, bool]] = []
    for _, status, created, settled in _RECORDS:
        c = _ts(created)
        if c > as_of:
            continue
        if status == "settled":
            assert settled is not None
            durations.append(((_ts(settled) - c).total_seconds(), True))
            continue
        age = (as_of - c).total_seconds()
        label = _LABELS[sum(age >= e for e in _EDGES)]
        n, oldest = ageing.get((status, label), (0, float("-inf")))
        ageing[(status, label)] = (n + 1, max(oldest, age))
        durations.append((age, False))
    rows = []
    survival = 1.0
    for t in sorted({d for d, _ in durations}):
        at_risk = sum(d >= t for d, _ in durations)
        events = sum(d == t and e for d, e in durations)
        censored = sum(d == t and not e for d, e in durations)
        survival *= 1 - events / at_risk
        rows.append((t, at_risk, events, censored, survival))
    return ageing, rows


def test_as_of_future_tasks_are_left_out_of_ageing_and_survival(tmp_path: Path) -> None:
    audit = analyze(_store(tmp_path, _RECORDS), as_of=AS_OF)
    want_ageing, want_survival = _expected(AS_OF)

    ageing = audit["ageing"]
    got_ageing = {
        (r["status"], r["age"]): (r["tasks"], r["oldest_s"]) for r in ageing.iter_rows(named=True)
    }
    assert got_ageing == want_ageing
    assert sum(n for n, _ in want_ageing.values()) == 5  # the 5 unsettled tasks created by as_of

    surv = audit["survival"]
    assert surv.height == len(want_survival)
    for got, want in zip(surv.select("t", "at_risk", "events", "censored", "survival").rows(),
                         want_survival, strict=True):  # fmt: skip
        assert got[:4] == pytest.approx(want[:4])
        assert got[4] == pytest.approx(want[4])
    assert surv["at_risk"][0] == 8  # every task created by as_of, and only those
    assert surv["events"].sum() == 3  # b_s2 settled after as_of: still an event at 420 s

    # no negative age or duration anywhere in the latency, survival and ageing frames
    for name, frame in audit.frames.items():
        if not name.startswith(("latency", "survival", "ageing")):
            continue
        for column, dtype in frame.schema.items():
            if dtype.is_numeric() and frame.height:
                low = frame[column].min()
                assert low is None or low >= 0, (name, column, low)

    after = audit.findings.filter(pl.col("check_id") == "task.created_after_as_of")
    assert after.height == 1
    row = after.row(0, named=True)
    assert row["severity"] == "info"
    assert row["difference"] == 4
    assert row["message"].startswith("4 tasks created after the as-of time are not aged (3 of")
    assert row["actual"] == "4 tasks created 2026-04-08T22:10:00Z to 2027-01-01T00:00:00Z"
    # the same count as a frame and in summary(), whatever checks are turned off
    assert audit["created_after_as_of"].row(0)[:2] == (4, 3)
    assert audit.summary()["created_after_as_of"] == 4


def test_as_of_future_nothing_to_note_when_every_task_is_older(tmp_path: Path) -> None:
    before = [r for r in _RECORDS if r[0].startswith("b_")]
    audit = analyze(_store(tmp_path, before), as_of=AS_OF)
    assert audit.findings.filter(pl.col("check_id") == "task.created_after_as_of").height == 0
    report = render(audit, tmp_path / "out", formats="md,json")
    md = report.paths["md"].read_text(encoding="utf-8")
    assert "not aged" not in md.split("## Backlog and survival", 1)[1].split("\n## ", 1)[0]
    doc = json.loads(report.paths["json"].read_text(encoding="utf-8"))
    assert doc["headline"]["created_after_as_of"] == 0


def test_as_of_future_report_notes_the_tasks_it_does_not_age(tmp_path: Path) -> None:
    audit = analyze(_store(tmp_path, _RECORDS), as_of=AS_OF)
    report = render(audit, tmp_path / "out", formats="html,md,json")
    note = "4 tasks created after the as-of time are not aged: the backlog ages and the survival"
    md = report.paths["md"].read_text(encoding="utf-8")
    backlog = md.split("## Backlog and survival", 1)[1].split("\n## ", 1)[0]
    assert note in backlog
    assert not re.search(r"\| -\d", backlog)  # no negative figure in the backlog table
    html = report.paths["html"].read_text(encoding="utf-8")
    assert note in html
    doc = json.loads(report.paths["json"].read_text(encoding="utf-8"))
    assert doc["headline"]["created_after_as_of"] == 4


def test_as_of_future_cli_report_of_tasks_ahead_of_the_clock(tmp_path: Path) -> None:
    # as the tester did: tasks created "in our future" (the API's clock ahead), report as of now
    ahead = datetime.now(UTC).replace(microsecond=0) + timedelta(days=200)

    def at(seconds: int) -> str:
        return (ahead + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")

    future = [
        ("f_p0", "pending", at(0), None),
        ("f_p1", "pending", at(60), None),
        ("f_s0", "settled", at(0), at(40)),
        ("n_i0", "in_progress", "2026-04-08T21:00:00Z", None),
    ]
    db = _store(tmp_path, future)
    out = tmp_path / "rep"
    cli = [sys.executable, "-m", "asg_audit", "report", "--db", str(db), "--out", str(out)]
    done = subprocess.run([*cli, "--format", "md,json"], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    md = (out / "latest" / "report.md").read_text(encoding="utf-8")
    backlog = md.split("## Backlog and survival", 1)[1].split("\n## ", 1)[0]
    assert "3 tasks created after the as-of time are not aged" in backlog
    assert "| in\\_progress | &gt;=24h | 1 |" in backlog
    assert "| pending |" not in backlog and not re.search(r"\| -\d", backlog)
    doc = json.loads((out / "latest" / "summary.json").read_text(encoding="utf-8"))
    assert doc["headline"]["created_after_as_of"] == 3
    assert any(c["check_id"] == "task.created_after_as_of" for c in doc["checks"])


def test_a_window_ending_in_the_future_ages_unsettled_tasks_at_now_not_at_its_end(
    tmp_path: Path,
) -> None:
    # tester A3: `--until` next month made as_of next month, aged a task created a minute ago
    # by weeks and failed it `task.stuck` (exit 1 from `audit`): the default is capped at now
    created = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=60)
    db = _store(tmp_path, [("fresh", "in_progress", created.isoformat(), None)])
    until = created + timedelta(days=40)
    before = datetime.now(UTC)
    audit = analyze(db, since=created - timedelta(days=1), until=until)
    after = datetime.now(UTC)
    assert audit.as_of is not None and before <= audit.as_of <= after
    assert "task.stuck" not in set(audit.findings["check_id"].to_list())
    # a window that has ended is still aged at its end, and a past as_of is kept as given
    past_until = created + timedelta(seconds=30)
    assert analyze(db, until=past_until).as_of == past_until
    assert analyze(db, until=until, as_of=past_until).as_of == past_until
