"""Tester T #2: a record repeating a key is ambiguous (DuckDB reads the first value, Python's
json and jq the last). The normaliser refuses it as `invalid_json`, its `field` the key, for
every source (file ingest, polls, webhook deliveries), as the webhook receiver does."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from asg_audit.model import Source
from asg_audit.normalize import RawRecord, normalise_records
from asg_audit.store import open_store
from asg_audit.webhook_writer import DuplicateKeyError, load_json_object, repeated_key_path

NOW = datetime(2026, 9, 15, 6, 0, tzinfo=UTC)
DETAIL = (
    "duplicate key {}: the object can be read two ways (first or last value), so it is not used"
)


def record(task_id: str, *, nested: bool = True, extra: str = "", settlement: str = "") -> str:
    """A valid result as JSON text; `extra` is spliced in at the top level (", ..."), and
    `settlement` inside the settlement object."""
    txid = hashlib.sha256(task_id.encode()).hexdigest()
    head = (
        f'{{"task_id":"{task_id}","status":"settled","consensus_label":"yes","confidence":1.0,'
        '"worker_count":3,"agreement_count":3,"created_at":"2026-09-15T05:49:59Z"'
    )
    if not nested:
        return (
            f'{head},"bsv_txid":"{txid}","total_cost_sats":975,'
            f'"settled_at":"2026-09-15T05:50:36Z"{extra}}}'
        )
    return (
        f'{head},"settlement":{{"bsv_txid":"{txid}","total_cost_sats":975,'
        f'"settled_at":"2026-09-15T05:50:36Z"{settlement}}}{extra}}}'
    )


# (task id, body, the reject's (field, key) or None when accepted; key "" means the field)
CASES: list[tuple[str, str, tuple[str, str] | None]] = [
    # the tester's record: a repeated top-level key (two values) and one inside settlement
    (
        "tsk_first",
        record(
            "tsk_first",
            extra=',"task_id":"tsk_last","consensus_label":"no"',
            settlement=',"total_cost_sats":650',
        ),
        ("settlement.total_cost_sats", "total_cost_sats"),
    ),
    ("tsk_top", record("tsk_top", extra=',"consensus_label":"no"'), ("consensus_label", "")),
    (
        "tsk_set",
        record("tsk_set", settlement=',"total_cost_sats":650'),
        ("settlement.total_cost_sats", "total_cost_sats"),
    ),
    # the same value twice: still refused, as the receiver refuses it (any repeat, any value)
    ("tsk_same", record("tsk_same", extra=',"status":"settled"'), ("status", "")),
    # written with an escape, the same key: `task\u005fid` is `task_id`
    ("tsk_esc", record("tsk_esc", extra=r',"task\u005fid":"tsk_other"'), ("task_id", "")),
    # deeper, in an object never read: refused too, named by the key alone (as the receiver)
    ("tsk_deep", record("tsk_deep", extra=',"meta":{"n":{"k":1,"k":2}}'), ("k", "")),
    ("tsk_arr", record("tsk_arr", extra=',"workers":[{"id":1},{"id":2,"id":3}]'), ("id", "")),
    # the same key in two different objects is no repeat: accepted
    ("tsk_two", record("tsk_two", settlement=',"task_id":"tsk_two"'), None),
    ("tsk_meta", record("tsk_meta", extra=',"meta":{"task_id":"x","status":"y"}'), None),
    ("tsk_flat", record("tsk_flat", nested=False, extra=',"workers":[{"id":1},{"id":2}]'), None),
    ("tsk_ok", record("tsk_ok"), None),
]


def expected_rejects() -> dict[str, tuple[str, str]]:
    return {
        task_id: (field, DETAIL.format(json.dumps(key or field.split(".")[-1])))
        for task_id, _, want in CASES
        if want is not None
        for field, key in [want]
    }


def test_the_cases_are_what_the_webhook_receiver_refuses() -> None:
    """The same bytes are refused by the receiver (its parser keeps all pairs of an object)."""
    for task_id, body, want in CASES:
        json.loads(body)  # valid JSON, every one
        if want is None:
            load_json_object(body.encode())
        else:
            with pytest.raises(DuplicateKeyError) as exc:
                load_json_object(body.encode())
            assert exc.value.key == (want[1] or want[0]), task_id
            # the receiver's reject field: the path, as the normaliser names the fields it
            # reads (top level, settlement); deeper, the path the normaliser leaves as a key
            path = repeated_key_path(body.encode(), exc.value.key)
            assert path == {"tsk_deep": "meta.n.k", "tsk_arr": "workers[1].id"}.get(
                task_id, want[0]
            ), task_id


def test_ingest_of_a_file_refuses_a_repeated_key(tmp_path: Path) -> None:
    lines = tmp_path / "dup.ndjson"
    lines.write_text("".join(body + "\n" for _, body, _ in CASES))
    db = tmp_path / "s.duckdb"
    proc = subprocess.run(
        [sys.executable, "-m", "asg_audit", "ingest", "--db", str(db), str(lines)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    accepted = sorted(t for t, _, want in CASES if want is None)
    assert f"{len(accepted)} accepted, {len(CASES) - len(accepted)} rejected" in proc.stdout

    con = duckdb.connect(str(db), read_only=True)
    results = con.execute("SELECT task_id FROM results ORDER BY task_id").fetchall()
    rejects = con.execute(
        "SELECT origin_line, reason, field, detail, decode(raw) FROM rejects ORDER BY origin_line"
    ).fetchall()
    con.close()
    assert [r[0] for r in results] == accepted  # no tsk_first nor tsk_last
    want = expected_rejects()
    lines_of = {task_id: i for i, (task_id, _, _) in enumerate(CASES, 1)}
    assert rejects == [
        (lines_of[t], "invalid_json", field, detail, CASES[lines_of[t] - 1][1])
        for t, (field, detail) in sorted(want.items(), key=lambda kv: lines_of[kv[0]])
    ]


def poll(task_id: str, body: str) -> RawRecord:
    return RawRecord(
        body=body,
        source=Source.POLL,
        origin=f"GET /v1/tasks/{task_id}/result",
        observed_at=NOW,
        task_id_hint=task_id,
        http_status=200,
    )


def test_a_polled_body_repeating_a_key_is_refused() -> None:
    batch = normalise_records([poll(task_id, body) for task_id, body, _ in CASES])
    assert sorted(batch.accepted["task_id"]) == sorted(t for t, _, w in CASES if w is None)
    got = {
        row["origin"].split("/")[3]: (row["reason"], row["field"], row["detail"])
        for row in batch.rejects.iter_rows(named=True)
    }
    assert got == {t: ("invalid_json", f, d) for t, (f, d) in expected_rejects().items()}


@pytest.mark.parametrize(
    ("body", "reason", "field"),
    [
        # after: not valid JSON, not an object (an array holding an object repeating a key)
        ('{"task_id":"tsk_a","task_id":"tsk_b",', "invalid_json", None),
        ('[{"task_id":"tsk_a","task_id":"tsk_b"}]', "not_object", None),
        # before every field check: the field's own type, a bad id, a bad settlement
        ('{"task_id":"tsk_a","worker_count":"3","worker_count":3}', "invalid_json", "worker_count"),
        ('{"task_id":"bad id","x":1,"x":1}', "invalid_json", "x"),
        ('{"task_id":"tsk_a","settlement":[1],"settlement":{}}', "invalid_json", "settlement"),
        ('{"task_id":"tsk_a","error":{"message":"a","message":"b"}}', "invalid_json", "error.message"),
        ('{"task_id":"tsk_a","error":"x","status":"settled","status":"failed"}', "invalid_json", "status"),
    ],
)  # fmt: skip
def test_a_repeated_key_comes_after_validity_and_before_the_field_checks(
    body: str, reason: str, field: str | None
) -> None:
    batch = normalise_records([poll("tsk_a", body)])
    assert batch.accepted.height == 0
    row = batch.rejects.row(0, named=True)
    assert (row["reason"], row["field"]) == (reason, field)


KEYS = ["task_id", "status", "settlement", "error", "message", "total_cost_sats", "meta", "k"]


def _value(rng: random.Random, depth: int) -> str:
    r = rng.random()
    if depth < 3 and r < 0.25:
        return _object(rng, depth + 1)
    if depth < 3 and r < 0.35:
        return "[" + ",".join(_value(rng, depth + 1) for _ in range(rng.randint(0, 3))) + "]"
    return rng.choice(['"s"', "1", "null", '"tsk_a"', "2.5", "true"])


def _object(rng: random.Random, depth: int) -> str:
    keys = [rng.choice(KEYS) for _ in range(rng.randint(0, 4))]
    if rng.random() < 0.7:
        keys = list(dict.fromkeys(keys))
    return "{" + ",".join(f'"{k}":{_value(rng, depth)}' for k in keys) + "}"


def test_the_normaliser_refuses_exactly_the_bodies_the_receiver_refuses() -> None:
    """Random objects (repeats at any depth, shared keys across objects, arrays of objects):
    a repeated key is refused by the normaliser if and only if the receiver refuses it."""
    rng = random.Random(20261129)
    bodies = ['{"task_id":"tsk_a",' + _object(rng, 0)[1:] for _ in range(4000)]
    bodies = [b.replace(",}", "}") for b in bodies]
    batch = normalise_records([poll("tsk_a", b) for b in bodies])
    frame = pl.concat(
        [
            batch.accepted.select(raw=pl.col("raw"), dup=pl.lit(False)),
            batch.rejects.select(
                raw=pl.col("raw").cast(pl.String),
                dup=pl.col("detail").str.starts_with("duplicate key"),
            ),
        ]
    )
    ours = dict(zip(frame["raw"], frame["dup"], strict=True))
    refused = 0
    for body in bodies:
        try:
            load_json_object(body.encode())
            theirs = False
        except DuplicateKeyError:
            theirs = True
        refused += theirs
        assert ours[body] == theirs, body
    assert 300 < refused < 3700  # both kinds well represented


def test_an_older_store_holding_a_repeated_key_is_judged_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store judged by rules 1 accepted the record (the first values); the next writer judges
    it again by today's rules: it moves to rejects, and its result goes."""
    db = tmp_path / "old.duckdb"
    dup = CASES[0][1]
    with open_store(db) as store:
        run = store.start_run("collect")
        batch = normalise_records([poll("tsk_first", record("tsk_first"))])
        accepted = batch.accepted.with_columns(
            raw=pl.lit(dup), payload_hash=pl.lit(hashlib.md5(dup.encode()).hexdigest())
        )
        store.write_batch(run, type(batch)(accepted=accepted, rejects=batch.rejects))
        store.write_batch(run, normalise_records([poll("tsk_ok", record("tsk_ok"))]))
        store.finish_run(run, status="ok")
    con = duckdb.connect(str(db))
    con.execute("UPDATE store_settings SET value = '1' WHERE key = 'rules_version'")
    assert con.execute("SELECT count(*) FROM results").fetchone() == (2,)
    con.close()
    capsys.readouterr()

    with open_store(db) as store:  # any writer
        run = store.start_run("ingest")
        store.finish_run(run, status="ok")
    assert "1 now rejected" in capsys.readouterr().err
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT task_id FROM results").fetchall() == [("tsk_ok",)]
    assert con.execute("SELECT reason, field, decode(raw) FROM rejects").fetchall() == [
        ("invalid_json", "settlement.total_cost_sats", dup)
    ]
    con.close()
