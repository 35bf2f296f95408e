"""A record stating one field under two aliases with different values.

The normaliser takes the first alias present (`settlement.total_cost_sats`, `total_cost_sats`,
`cost_sats`; `settlement.bsv_txid`, `bsv_txid`; `settlement.settled_at`, `settled_at`;
`task_type`, `type`) and still does: nothing stored changes. But such a record is now flagged
`aliases_disagree`, with one detail entry per disagreeing pair, and the check
`record.aliases_disagree` (fail) names the task, the field and both values with their paths.
The same value written two ways (975 and 975, a txid in upper case, one instant as `Z`,
`+00:00` or epoch seconds) is no disagreement. A store judged by rules 3 gets the flag when a
writer opens it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from _records import consensus_record

from asg_audit.audit import analyze
from asg_audit.model import ALIAS_DETAIL_PATTERN, Flag, Source
from asg_audit.normalize import RULES_VERSION, RawRecord, normalise_records

NOW = datetime(2026, 9, 15, 6, 0, tzinfo=UTC)
TX3 = "3" * 64
TX4 = "4" * 64
CREATED = "2026-09-15T05:00:00Z"
FLAG = Flag.ALIASES_DISAGREE.value
CHECK = "record.aliases_disagree"


def body(task_id: str, **fields: Any) -> str:
    """A settled result (W=3, A=3, created an hour before NOW) with the given settlement
    fields, flat or nested; a field `settlement` is the nested object."""
    return json.dumps(consensus_record(task_id, **{"created_at": CREATED, **fields}))


def poll(text: str, task_id: str = "k") -> RawRecord:
    return RawRecord(
        body=text,
        source=Source.POLL,
        origin=f"GET /v1/tasks/{task_id}/result",
        observed_at=NOW,
        task_id_hint=task_id,
        http_status=200,
    )


def accepted(text: str) -> dict[str, Any]:
    batch = normalise_records([poll(text)])
    assert batch.rejects.height == 0, batch.rejects.to_dicts()
    assert batch.accepted.height == 1
    return batch.accepted.to_dicts()[0]


def details(flags: list[str]) -> list[tuple[str, str]]:
    """The (field, pair text) of each detail entry of the flag."""
    found = [re.match(ALIAS_DETAIL_PATTERN, f) for f in flags]
    return [(m.group(1), m.group(2)) for m in found if m]


STORED = ("cost_sats", "bsv_txid", "settled_at", "task_type", "cost_unknown", "shape")
SETTLED_Z = "2026-09-15T05:00:50Z"
SETTLED_EARLY = "2026-09-15T05:00:10Z"

# (id, the used alias alone, the later alias added, field, the used and the other as shown)
DISAGREE: list[tuple[str, dict[str, Any], dict[str, Any], str, str, str]] = [
    (
        "settlement.total_cost_sats-total_cost_sats",
        {"settlement": {"total_cost_sats": 975}},
        {"total_cost_sats": 650},
        "cost_sats",
        "settlement.total_cost_sats = 975",
        "total_cost_sats = 650",
    ),
    (
        "settlement.total_cost_sats-cost_sats",
        {"settlement": {"total_cost_sats": 975}},
        {"cost_sats": 650},
        "cost_sats",
        "settlement.total_cost_sats = 975",
        "cost_sats = 650",
    ),
    (
        "total_cost_sats-cost_sats",
        {"total_cost_sats": 975},
        {"cost_sats": 650},
        "cost_sats",
        "total_cost_sats = 975",
        "cost_sats = 650",
    ),
    (
        "cost-unknown-vs-known",  # 0 (unknown) used, 975 stated beside it
        {"total_cost_sats": 0},
        {"cost_sats": 975},
        "cost_sats",
        "total_cost_sats = 0",
        "cost_sats = 975",
    ),
    (
        "cost-as-string",  # an alias of a type the field refuses disagrees
        {"total_cost_sats": 975},
        {"cost_sats": "975"},
        "cost_sats",
        "total_cost_sats = 975",
        'cost_sats = "975"',
    ),
    (
        "cost-as-fraction",
        {"total_cost_sats": 975},
        {"cost_sats": 975.0},
        "cost_sats",
        "total_cost_sats = 975",
        "cost_sats = 975.0",
    ),
    (
        "cost-as-object",  # shown as minified JSON
        {"total_cost_sats": 975},
        {"cost_sats": {"a": True, "b": None}},
        "cost_sats",
        "total_cost_sats = 975",
        'cost_sats = {"a":true,"b":null}',
    ),
    (
        "cost-as-long-array",  # cut at 80 characters
        {"total_cost_sats": 975},
        {"cost_sats": [1, {"a": "x" * 100}]},
        "cost_sats",
        "total_cost_sats = 975",
        "cost_sats = " + ('[1,{"a":"' + "x" * 100)[:80] + "...",
    ),
    (
        "cost-negative",
        {"settlement": {"total_cost_sats": 975}},
        {"total_cost_sats": -975},
        "cost_sats",
        "settlement.total_cost_sats = 975",
        "total_cost_sats = -975",
    ),
    (
        "settlement.bsv_txid-bsv_txid",
        {"settlement": {"bsv_txid": TX3}},
        {"bsv_txid": TX4},
        "bsv_txid",
        f'settlement.bsv_txid = "{TX3}"',
        f'bsv_txid = "{TX4}"',
    ),
    (
        "txid-empty-vs-txid",
        {"settlement": {"bsv_txid": ""}},
        {"bsv_txid": TX4},
        "bsv_txid",
        'settlement.bsv_txid = ""',
        f'bsv_txid = "{TX4}"',
    ),
    (
        "settlement.settled_at-settled_at",
        {"settlement": {"settled_at": SETTLED_Z}},
        {"settled_at": SETTLED_EARLY},
        "settled_at",
        f'settlement.settled_at = "{SETTLED_Z}"',
        f'settled_at = "{SETTLED_EARLY}"',
    ),
    (
        "settled_at-epoch-another-instant",
        {"settlement": {"settled_at": SETTLED_Z}},
        {"settled_at": 1789448411},  # 2026-09-15T05:00:11Z
        "settled_at",
        f'settlement.settled_at = "{SETTLED_Z}"',
        "settled_at = 1789448411",
    ),
    (
        "settled_at-unparseable",
        {"settlement": {"settled_at": SETTLED_Z}},
        {"settled_at": "yesterday"},
        "settled_at",
        f'settlement.settled_at = "{SETTLED_Z}"',
        'settled_at = "yesterday"',
    ),
    (
        "settled_at-object",
        {"settlement": {"settled_at": SETTLED_Z}},
        {"settled_at": {"x": 1}},
        "settled_at",
        f'settlement.settled_at = "{SETTLED_Z}"',
        'settled_at = {"x":1}',
    ),
    (
        "task_type-type",
        {"task_type": "tox"},
        {"type": "spam"},
        "task_type",
        'task_type = "tox"',
        'type = "spam"',
    ),
    (
        "task_type-type-case",  # types compare exactly
        {"task_type": "tox"},
        {"type": "Tox"},
        "task_type",
        'task_type = "tox"',
        'type = "Tox"',
    ),
]


def _merge(used: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in used.items()}
    for k, v in other.items():
        if isinstance(v, dict):
            out.setdefault(k, {}).update(v)
        else:
            out[k] = v
    return out


@pytest.mark.parametrize(
    ("used", "other", "field", "shown_used", "shown_other"),
    [c[1:] for c in DISAGREE],
    ids=[c[0] for c in DISAGREE],
)
def test_two_aliases_with_different_values_are_flagged_and_the_first_is_still_used(
    used: dict[str, Any],
    other: dict[str, Any],
    field: str,
    shown_used: str,
    shown_other: str,
) -> None:
    alone = accepted(body("k", **used))
    both = accepted(body("k", **_merge(used, other)))
    # nothing stored changes: the value is the first alias's, as without the other alias
    assert {c: both[c] for c in STORED} == {c: alone[c] for c in STORED}
    assert FLAG not in alone["flags"]
    assert FLAG in both["flags"]
    assert details(both["flags"]) == [(field, f"{shown_used} (used), {shown_other}")]
    # the other flags are those of the record with the used alias alone
    assert [f for f in both["flags"] if not f.startswith(FLAG)] == alone["flags"]


# (id, fields): two or three aliases stating the same value, written two ways or not
AGREE: list[tuple[str, dict[str, Any]]] = [
    (
        "cost-975-975-975",
        {"settlement": {"total_cost_sats": 975}, "total_cost_sats": 975, "cost_sats": 975},
    ),
    ("cost-0-0", {"total_cost_sats": 0, "cost_sats": 0}),
    ("cost-null-beside", {"total_cost_sats": 975, "cost_sats": None}),  # null: not stated
    (
        "txid-upper-lower",
        {"settlement": {"bsv_txid": "AbC" + TX3[3:]}, "bsv_txid": "abc" + TX3[3:]},
    ),
    ("txid-spaces", {"settlement": {"bsv_txid": f" {TX3} "}, "bsv_txid": TX3.upper()}),
    (
        "settled-Z-offset",
        {"settlement": {"settled_at": SETTLED_Z}, "settled_at": "2026-09-15T05:00:50+00:00"},
    ),
    (
        "settled-Z-other-zone",
        {"settlement": {"settled_at": SETTLED_Z}, "settled_at": "2026-09-15T07:00:50.000+02:00"},
    ),
    ("settled-Z-epoch", {"settlement": {"settled_at": SETTLED_Z}, "settled_at": 1789448450}),
    ("settled-epoch-Z", {"settlement": {"settled_at": 1789448450}, "settled_at": SETTLED_Z}),
    ("type-same", {"task_type": "tox", "type": "tox"}),
]


@pytest.mark.parametrize("fields", [c[1] for c in AGREE], ids=[c[0] for c in AGREE])
def test_the_same_value_under_two_aliases_is_no_disagreement(fields: dict[str, Any]) -> None:
    row = accepted(body("k", **fields))
    assert not [f for f in row["flags"] if f.startswith(FLAG)], row["flags"]


def test_the_tester_records_stay_as_stored_and_are_findings(tmp_path: Path) -> None:
    """The repro: k1 (flat cost_sats 650, total_cost_sats 975), k2 (flat cost_sats 650,
    settlement.total_cost_sats 975), k3 (flat txid 444.. settled 05:00:10, nested 333..
    05:00:50): ingested by the command, each stored as before (975, 333.., 50 s) and each a
    `record.aliases_disagree` finding of `analyze`; k0 (consistent) none."""
    settled = SETTLED_Z
    lines = [
        body("k0", bsv_txid=TX3, settled_at=settled, cost_sats=975, total_cost_sats=975),
        body("k1", bsv_txid=TX3, settled_at=settled, cost_sats=650, total_cost_sats=975),
        body(
            "k2",
            bsv_txid=TX3,
            settled_at=settled,
            cost_sats=650,
            settlement={"total_cost_sats": 975},
        ),
        body(
            "k3",
            total_cost_sats=975,
            bsv_txid=TX4,
            settled_at=SETTLED_EARLY,
            settlement={"bsv_txid": TX3, "settled_at": settled},
        ),
    ]
    export = tmp_path / "export.ndjson"
    export.write_text("\n".join(lines) + "\n")
    db = tmp_path / "s.duckdb"
    done = subprocess.run(
        [sys.executable, "-m", "asg_audit", "ingest", str(export), "--db", str(db), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute(
        "SELECT task_id, cost_sats, bsv_txid, epoch(settled_at - created_at), list_contains(flags,"
        f" '{FLAG}') FROM results ORDER BY task_id"
    ).fetchall()
    con.close()
    assert rows == [
        ("k0", 975, TX3, 50.0, False),
        ("k1", 975, TX3, 50.0, True),
        ("k2", 975, TX3, 50.0, True),
        ("k3", 975, TX3, 50.0, True),
    ]

    audit = analyze(db)
    found = audit.findings.filter(pl.col("check_id") == CHECK).sort("entity_id", "message")
    assert found["severity"].to_list() == ["fail"] * 4
    assert found["entity_type"].to_list() == ["task"] * 4
    assert found["entity_id"].to_list() == ["k1", "k2", "k3", "k3"]
    assert found["message"].to_list() == [
        "task k1 states cost_sats twice with different values:"
        " total_cost_sats = 975 (used), cost_sats = 650",
        "task k2 states cost_sats twice with different values:"
        " settlement.total_cost_sats = 975 (used), cost_sats = 650",
        "task k3 states bsv_txid twice with different values:"
        f' settlement.bsv_txid = "{TX3}" (used), bsv_txid = "{TX4}"',
        "task k3 states settled_at twice with different values:"
        f' settlement.settled_at = "{settled}" (used), settled_at = "{SETTLED_EARLY}"',
    ]
    assert found["expected"].to_list()[:2] == ["one value for cost_sats"] * 2
    # the cost model still compares the value used (975 = 325 x 3): no cost finding for these
    assert audit.findings.filter(pl.col("check_id") == "cost.mismatch").height == 0


def test_values_in_the_finding_are_escaped_and_cut() -> None:
    """A value is shown as written, a string JSON-quoted (control characters escaped) and cut
    at 80 characters: a record cannot put a terminal escape or a megabyte into a finding."""
    long = "x" * 5000
    row = accepted(body("k", task_type="tox\x1b[2J\nend", type=long))
    [(field, pair)] = details(row["flags"])
    assert field == "task_type"
    assert pair == f'task_type = "tox\\u001B[2J\\nend" (used), type = "{"x" * 80}"...'
    assert "\x1b" not in pair and "\n" not in pair


def test_an_older_store_gets_the_flag_when_a_writer_opens_it(tmp_path: Path) -> None:
    """A store judged by rules 3 stored the disagreeing records with the same values and no
    flag. The next writer judges them again: a file record (read again from its file) and a
    polled answer (its raw text kept) get the flag, results and `analyze` follow."""
    export = tmp_path / "export.ndjson"
    export.write_text(
        body("f1", bsv_txid=TX3, settled_at=SETTLED_Z, cost_sats=650, total_cost_sats=975)
        + "\n"
        + body("f2", bsv_txid=TX3, settled_at=SETTLED_Z, total_cost_sats=975)
        + "\n"
    )
    db = tmp_path / "old.duckdb"
    from asg_audit.ingest_files import ingest_paths
    from asg_audit.store import open_store

    ingest_paths(db, [export])
    with open_store(db) as store:
        run = store.start_run("collect")
        store.write_batch(
            run,
            normalise_records(
                [
                    poll(
                        body(
                            "p1",
                            task_type="tox",
                            type="spam",
                            bsv_txid=TX3,
                            settled_at=SETTLED_Z,
                            total_cost_sats=975,
                        ),
                        "p1",
                    )
                ]
            ),
        )
        store.finish_run(run, status="ok")
    # the rows as rules 3 left them: the same values, no flag
    con = duckdb.connect(str(db))
    strip = f"list_filter(flags, lambda f: NOT starts_with(f, '{FLAG}'))"
    con.execute(f"UPDATE observations SET flags = {strip}")
    con.execute(f"UPDATE results SET flags = {strip}")
    con.execute("UPDATE store_settings SET value = '3' WHERE key = 'rules_version'")
    before = con.execute(
        "SELECT task_id, cost_sats, bsv_txid, task_type, settled_at FROM results ORDER BY 1"
    ).fetchall()
    assert con.execute(
        f"SELECT count(*) FROM observations WHERE list_contains(flags, '{FLAG}')"
    ).fetchall() == [(0,)]
    con.close()
    assert analyze(db).findings.filter(pl.col("check_id") == CHECK).height == 0

    other = tmp_path / "later.ndjson"  # any writer: an ingest of another file
    other.write_text(body("f3", bsv_txid=TX3, settled_at=SETTLED_Z, total_cost_sats=975) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "asg_audit", "ingest", str(other), "--db", str(db), "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "judged again" in done.stderr and "2 changed" in done.stderr, done.stderr[-2000:]
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute(
        "SELECT value FROM store_settings WHERE key = 'rules_version'"
    ).fetchall() == [(str(RULES_VERSION),)]
    assert (
        con.execute(
            "SELECT task_id, cost_sats, bsv_txid, task_type, settled_at FROM results"
            " WHERE task_id <> 'f3' ORDER BY 1"
        ).fetchall()
        == before
    )  # nothing stored changes but the flags
    flagged = con.execute(
        f"SELECT task_id FROM results WHERE list_contains(flags, '{FLAG}') ORDER BY 1"
    ).fetchall()
    obs = con.execute(
        f"SELECT task_id FROM observations WHERE list_contains(flags, '{FLAG}') ORDER BY 1"
    ).fetchall()
    con.close()
    assert flagged == obs == [("f1",), ("p1",)]
    found = analyze(db).findings.filter(pl.col("check_id") == CHECK).sort("entity_id")
    assert found["entity_id"].to_list() == ["f1", "p1"]
    assert found["message"].to_list() == [
        "task f1 states cost_sats twice with different values:"
        " total_cost_sats = 975 (used), cost_sats = 650",
        'task p1 states task_type twice with different values: task_type = "tox" (used),'
        ' type = "spam"',
    ]


def test_a_record_refused_for_an_alias_of_the_wrong_type_is_still_a_reject() -> None:
    """The comparison runs on every record of a batch, rejects included: an array where a txid
    or timestamp is (a bad_type / bad_timestamp reject) neither breaks the batch nor is kept;
    a long one is cut as text, not read as JSON (a cut array is no JSON)."""
    long = [None, {"": None}, {"00": None, "": -(10**16), "00000000": -(10**17), "x": "y" * 80}]
    bad_txid = body("k1", bsv_txid=long, settlement={"bsv_txid": TX3})
    bad_time = body("k2", settled_at=[1, 2], settlement={"settled_at": [3]})
    good = body("k3", bsv_txid=TX3, total_cost_sats=975, cost_sats=650)
    batch = normalise_records([poll(bad_txid, "k1"), poll(bad_time, "k2"), poll(good, "k3")])
    assert batch.rejects.select("reason", "field").rows() == [
        ("bad_type", "bsv_txid"),
        ("bad_timestamp", "settlement.settled_at"),
    ]
    assert batch.accepted["task_id"].to_list() == ["k3"]
    assert FLAG in batch.accepted["flags"][0]
