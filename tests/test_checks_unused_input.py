"""Records the store holds but no result uses reach the audit: `input.rejected` (rejects) and
`input.no_status` (records kept without a status that are not error answers).

Tester T7: signed deliveries whose `event` was `Task.Settled` or `task.created` were answered
"stored" by the receiver and then appeared nowhere (no result, no reject, no finding). Tester T8:
a drop folder's corrupt export gave `audit` a clean "ingest ok: ... 0 records accepted" and
exit 0, and no report mentioned its rejects.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import polars as pl
from _audit_job import offline_job, result_lines, run_audit_json
from _webhooks_server import free_port, payload, receiver_process, signed

import asg_audit
from asg_audit.ingest_files import ingest_paths
from asg_audit.model import Source
from asg_audit.normalize import RawRecord, normalise_records
from asg_audit.store import open_store

SAMPLE = Path(asg_audit.__file__).parent / "data" / "sample_results.jsonl"


def _input_findings(db: Path, check_id: str) -> dict[str, dict[str, object]]:
    findings = asg_audit.analyze(db).findings.filter(pl.col("check_id") == check_id)
    return {row["entity_id"]: row for row in findings.iter_rows(named=True)}


def test_each_reject_reason_is_a_finding_with_its_count_and_first_line(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    summary = ingest_paths(db, [SAMPLE, SAMPLE])  # the second time: rejects not stored twice
    found = _input_findings(db, "input.rejected")
    assert {k: int(v["difference"]) for k, v in found.items()} == {  # type: ignore[call-overload]
        f"file {reason}": n for reason, n in summary.rejected_by_reason.items()
    }
    assert len(found) == 5
    bad_type = found["file bad_type"]
    assert bad_type["severity"] == "warn"
    assert str(bad_type["message"]).startswith(
        f"1 file record(s) rejected: bad_type; the first {SAMPLE}:51 (field worker_count), stored "
    )


def test_the_first_reject_is_by_file_and_line_when_stored_together(tmp_path: Path) -> None:
    # every reject of one file has the same observed_at: the first is by line, not by chance
    lines = tmp_path / "many.ndjson"
    lines.write_text("".join(f'{{"task_id": "x{i}", "worker_count": "3"}}\n' for i in range(400)))
    db = tmp_path / "m.duckdb"
    ingest_paths(db, [lines])
    (row,) = _input_findings(db, "input.rejected").values()
    assert row["difference"] == 400
    assert f"the first {lines}:1 (field worker_count), stored " in str(row["message"])


def test_a_poll_answer_without_status_counts_but_a_404_body_does_not(tmp_path: Path) -> None:
    db = tmp_path / "p.duckdb"
    now = datetime.now(UTC)
    records = [
        RawRecord('{"task_id": "a1", "status": null}', Source.POLL, "GET a1", now, None, "a1", 200),
        RawRecord('{"detail": "Not Found"}', Source.POLL, "GET a2", now, None, "a2", 404),
    ]
    with open_store(db) as store:
        run_id = store.start_run("collect")
        store.write_batch(run_id, normalise_records(records))
        store.finish_run(run_id, status="completed")
    found = _input_findings(db, "input.no_status")
    assert {k: v["difference"] for k, v in found.items()} == {"poll partial": 1}
    assert "the first a1 (GET a1)" in str(found["poll partial"]["message"])


def test_error_answers_are_no_finding_but_a_record_without_status_is(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    lines = tmp_path / "mixed.ndjson"
    lines.write_text(
        result_lines(1)
        + '{"task_id": "e1", "error": {"code": "internal", "message": "boom"}}\n'
        + '{"task_id": "n1", "status": null, "consensus_label": "cat"}\n'
        + '{"task_id": "n2", "consensus_label": "cat"}\n'
    )
    ingest_paths(db, [lines])
    assert _input_findings(db, "input.rejected") == {}
    found = _input_findings(db, "input.no_status")
    assert list(found) == ["file partial"]
    assert found["file partial"]["difference"] == 2
    assert str(found["file partial"]["message"]).startswith(
        f"2 file record(s) (partial shape) kept without a status, so in no result; the first n1"
        f" ({lines}:3), stored "
    )


def test_a_delivery_of_another_event_is_stored_and_found(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    port = free_port()
    bodies = [payload("good")]
    for i, event in enumerate(["Task.Settled", "task.created"]):
        body = payload(f"odd{i}")
        body["event"] = event
        bodies.append(body)
    with receiver_process(db, port):
        for body in bodies:
            raw, headers = signed(body)
            answer = httpx.post(
                f"http://127.0.0.1:{port}/webhooks/asg", content=raw, headers=headers
            )
            assert answer.status_code == 200, answer.text
    tasks = asg_audit.analyze(db).summary()["tasks"]
    assert tasks == 1  # only the task.settled delivery is a result ...
    found = _input_findings(db, "input.no_status")
    assert list(found) == ["webhook webhook"]  # ... the two others are this finding
    message = str(found["webhook webhook"]["message"])
    assert found["webhook webhook"]["difference"] == 2
    assert message.startswith(
        "2 webhook record(s) (webhook shape) kept without a status, so in no result (its event:"
        " Task.Settled); the first odd0"
    )


def test_the_audit_step_line_counts_the_rejects_and_the_findings_warn(tmp_path: Path) -> None:
    job = offline_job(tmp_path, 3)
    (job["drop"] / "corrupt.ndjson").write_text(
        'garbage{\n{"task_id": "z1", "status": "settled", "settled_at": "2026-13-45T00:00:00Z"}\n'
    )
    code, outcome, err = run_audit_json(job["config"])
    assert code == 0, (outcome, err)  # warnings: below the default fail_on
    assert outcome["steps"]["ingest"] == (
        "ok: 2 new file(s), 3 records accepted (3 new results, 0 duplicates),"
        " 2 rejected (bad_timestamp 1, invalid_json 1)"
    ), outcome["steps"]
    assert outcome["summary"]["findings"]["warn"] == 2
