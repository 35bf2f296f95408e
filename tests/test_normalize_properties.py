"""Property tests: nothing crashes the normaliser and every record is accounted for once."""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from asg_audit.ingest_files import ingest_paths
from asg_audit.model import Source
from asg_audit.normalize import RawRecord, normalise_records
from asg_audit.store import open_store

NOW = datetime(2026, 11, 1, tzinfo=UTC)
VALID = {
    "task_id": "tsk_1",
    "status": "settled",
    "consensus_label": "cat",
    "confidence": 1.0,
    "worker_count": 3,
    "agreement_count": 3,
    "bsv_txid": "a" * 64,
    "total_cost_sats": 975,
    "created_at": "2026-04-08T21:00:00Z",
    "settled_at": "2026-04-08T21:00:47Z",
    "settlement": {
        "bsv_txid": "b" * 64,
        "total_cost_sats": 650,
        "settled_at": "2026-04-08T21:00:47Z",
    },
}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def mutated_records(draw: st.DrawFn) -> bytes:
    record = dict(VALID)
    for key in draw(st.lists(st.sampled_from(sorted(VALID)), max_size=4)):
        action = draw(st.sampled_from(["drop", "replace"]))
        if action == "drop":
            record.pop(key, None)
        else:
            record[key] = draw(json_values)
    text = json.dumps(record)
    if draw(st.booleans()):
        cut = draw(st.integers(min_value=0, max_value=len(text)))
        text = text[:cut]
    return text.encode()


bodies = st.lists(st.binary(max_size=200) | mutated_records(), min_size=1, max_size=30)


@settings(max_examples=150, deadline=None)
@given(bodies)
def test_normalise_every_record_ends_in_exactly_one_output(raw: list[bytes]) -> None:
    records = [
        RawRecord(body=b, source=Source.FILE, origin="f", observed_at=NOW, origin_line=i + 1)
        for i, b in enumerate(raw)
    ]
    batch = normalise_records(records)
    lines = (
        batch.accepted.get_column("origin_line").to_list()
        + batch.rejects.get_column("origin_line").to_list()
    )
    assert sorted(lines) == list(range(1, len(raw) + 1))
    assert batch.rejects.get_column("reason").null_count() == 0
    # Accepted records always have a safe task id and integer-typed money.
    assert (
        batch.accepted.get_column("task_id").str.contains(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$").all()
    )
    assert batch.accepted.schema["cost_sats"] == pl.Int64


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(bodies)
@example([b"\xef\xbb\xbf"])  # found by hypothesis: a file holding only a byte-order mark
def test_ingest_every_line_lands_in_results_or_rejects(tmp_path: Path, raw: list[bytes]) -> None:
    case = Path(tempfile.mkdtemp(dir=tmp_path))  # hypothesis replays examples: a fresh folder each
    lines = [b.replace(b"\n", b" ").replace(b"\r", b" ") for b in raw]
    lines = [b if b.strip() else b"{}" for b in lines]
    if not lines[0].removeprefix(b"\xef\xbb\xbf").strip():
        lines[0] = b"{}"  # a byte-order mark opening the file is no record: nor a blank line
    path = case / "f.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    db = case / "db.duckdb"
    summary = ingest_paths(db, [path])
    assert summary.records == len(lines)
    with open_store(db, read_only=True) as store:
        observed = store.con.execute("SELECT count(*) FROM observations").fetchall()[0][0]
        rejected = store.count("rejects")
        results = store.con.execute(
            "SELECT count(DISTINCT task_id) FROM observations WHERE status IS NOT NULL"
        ).fetchall()[0][0]
        assert store.count("results") == results
    assert observed + summary.duplicates + rejected == len(lines)
