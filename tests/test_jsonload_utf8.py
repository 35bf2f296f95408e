"""Bodies and NDJSON lines are read as UTF-8 only (`load_json_object`), as the normaliser reads
them: no UTF-16/32 guess from NUL bytes, no skipped BOM, no lone surrogate escape; `track`
refuses a UTF-16/32 file whole and makes every odd line a reject, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from _hardening_procs import track_cli
from _webhooks_server import SECRET, ThreadServer, payload, signed

from asg_audit.errors import InputError
from asg_audit.track import track_file
from asg_audit.webhook_writer import load_json_object
from asg_audit.webhooks import WebhookSettings, create_webhook_app

REPO = Path(__file__).resolve().parents[1]
OBJECT = '{"task_id": "x1", "n": 1}'


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _submission(task_id: str) -> str:
    return json.dumps(
        {
            "task_id": task_id,
            "type": "classification",
            "consensus_threshold": 3,
            "label_spec": {"options": ["a", "b"]},
            "created_at": "2026-09-15T00:00:00Z",
        }
    )


# -- load_json_object ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (OBJECT.encode("utf-16-le"), json.JSONDecodeError),
        (OBJECT.encode("utf-16-be"), json.JSONDecodeError),
        (OBJECT.encode("utf-32-le"), json.JSONDecodeError),
        (OBJECT.encode("utf-16"), UnicodeDecodeError),  # its byte order mark is not UTF-8
        (b"\xef\xbb\xbf" + OBJECT.encode(), json.JSONDecodeError),  # UTF-8 with a BOM
        (b"\x00a\x00bc", json.JSONDecodeError),  # guessed UTF-16-BE, and not even that
        (b"\x00\x00\x00a", json.JSONDecodeError),  # guessed UTF-32-BE
    ],
    ids=["utf16le", "utf16be", "utf32le", "utf16-bom", "utf8-bom", "nul-line", "nul-utf32"],
)
def test_load_json_object_reads_utf8_only(body, error):
    with pytest.raises(ValueError) as caught:
        load_json_object(body)
    assert type(caught.value) is error
    if error is UnicodeDecodeError:
        assert caught.value.encoding == "utf-8"


def test_load_json_object_refuses_bytes_not_utf8():
    with pytest.raises(UnicodeDecodeError):
        load_json_object(b'{"task_id": "\xff"}')


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "\\uD83D", "\\ude00\\ud83d"])
def test_load_json_object_refuses_a_lone_surrogate(escape):
    with pytest.raises(json.JSONDecodeError, match="lone surrogate"):
        load_json_object(f'{{"a": ["ok", {{"b": "x{escape}"}}]}}'.encode())
    with pytest.raises(json.JSONDecodeError, match="lone surrogate"):
        load_json_object(f'{{"x{escape}": 1}}'.encode())


def test_load_json_object_reads_a_surrogate_pair_and_an_escaped_backslash():
    assert load_json_object(b'{"a": "\\ud83d\\ude00", "b": "\\\\ud800"}') == {
        "a": "\U0001f600",
        "b": "\\ud800",
    }


def test_load_json_object_refuses_an_integer_too_long_for_int():
    # over Python's 4,300 digits for int(), and so beyond any float (infinity is no JSON
    # number): invalid JSON (a ValueError), never a bare int() error nor an infinite value
    assert load_json_object(b'{"n": 1' + b"0" * 300 + b"}") == {"n": 10**300}
    with pytest.raises(ValueError, match="5,000 digits"):
        load_json_object(b'{"n": ' + b"9" * 5000 + b"}")


# -- track --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "name"),
    [("utf-16", "UTF-16LE"), ("utf-16-be", "UTF-16BE"), ("utf-32", "UTF-32LE")],
)
@pytest.mark.parametrize("suffix", [".ndjson", ".csv"])
def test_track_refuses_a_utf16_or_utf32_file_whole(tmp_path, db, encoding, name, suffix):
    path = tmp_path / f"subs{suffix}"
    if suffix == ".csv":
        text = "task_id,task_type,consensus_threshold,options,created_at\nx1,c,3,a|b,2026-09-15\n"
    else:
        text = _submission("x1") + "\n" + _submission("x2") + "\n"
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    path.write_bytes(data)
    with pytest.raises(InputError, match=f"the file is {name} text .*; nothing stored"):
        track_file(db, path)
    done = track_cli(db, path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert name in done.stderr and "save it as UTF-8" in done.stderr
    assert not db.exists()


def test_track_rejects_lines_a_guess_would_read_as_utf16(tmp_path, db):
    path = tmp_path / "subs.ndjson"
    path.write_bytes(
        _submission("x1").encode()
        + b"\n\x00a\x00bc\n"
        + _submission("x3").encode("utf-16-le")
        + b"\n"
        + _submission("x4").encode()
        + b"\n"
    )
    done = track_cli(db, path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert _rows(db, "SELECT task_id FROM submissions ORDER BY task_id") == [("x1",), ("x4",)]
    rejects = _rows(db, "SELECT origin_line, reason, detail FROM rejects ORDER BY origin_line")
    assert [(line, reason) for line, reason, _ in rejects] == [
        (2, "invalid_json"),
        (3, "invalid_json"),
    ]
    assert all("NUL bytes: UTF-16 or UTF-32 text?" in detail for _, _, detail in rejects)


def test_track_rejects_what_ingest_rejects_for_the_same_lines(tmp_path):
    lines = [b"\x00a\x00bc", _submission("x3").encode("utf-16-le"), b'{"task_id": "\xff"}']
    path = tmp_path / "subs.ndjson"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    tracked, ingested = tmp_path / "t.duckdb", tmp_path / "i.duckdb"
    assert track_cli(tracked, path).returncode == 0
    done = subprocess.run(
        [sys.executable, "-m", "asg_audit", "ingest", "--db", str(ingested), str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    sql = "SELECT origin_line, reason FROM rejects ORDER BY origin_line"
    assert (
        _rows(tracked, sql)
        == _rows(ingested, sql)
        == [
            (1, "invalid_json"),
            (2, "invalid_json"),
            (3, "invalid_utf8"),
        ]
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("type", '"c\\ud800"'),
        ("label_spec", '{"options": ["\\ud800", "b"]}'),
        ("data_url", '"https://x.example/\\udfff"'),
        ("created_at", '"\\ud800"'),
    ],
)
def test_track_rejects_a_lone_surrogate_without_traceback(tmp_path, db, field, value):
    record = json.loads(_submission("x9"))
    line = json.dumps({k: v for k, v in record.items() if k != field})[:-1]
    line += f', "{field}": {value}}}'
    path = tmp_path / "subs.ndjson"
    path.write_text(_submission("x1") + "\n" + line + "\n", encoding="utf-8")
    done = track_cli(db, path)
    assert done.returncode == 0, done.stderr
    assert _rows(db, "SELECT task_id FROM submissions") == [("x1",)]
    [(reason, detail)] = _rows(db, "SELECT reason, detail FROM rejects")
    assert reason == "invalid_json" and "lone surrogate" in detail


def test_track_rejects_an_integer_too_long_without_traceback(tmp_path, db):
    path = tmp_path / "subs.ndjson"
    # over Python's 4300 digits for int(): json.loads raised a bare ValueError
    record = _submission("x2").replace(
        '"consensus_threshold": 3', '"consensus_threshold": ' + "9" * 5000
    )
    path.write_text(_submission("x1") + "\n" + record + "\n", encoding="utf-8")
    done = track_cli(db, path)
    assert done.returncode == 0, done.stderr
    assert _rows(db, "SELECT task_id FROM submissions") == [("x1",)]
    # 5,000 nines are no number a float holds either (infinity): not valid JSON
    [(reason, detail)] = _rows(db, "SELECT reason, detail FROM rejects")
    assert reason == "invalid_json" and "5,000 digits" in detail, detail


# -- the receiver -------------------------------------------------------------------------------


def test_webhooks_lone_surrogate_body_is_rejected_not_a_crash(db):
    # It was parsed, then hashing its event key raised UnicodeEncodeError: 500, a traceback.
    at = datetime.now(UTC)
    body = json.dumps(payload("tsk_surrogate", at=at)).replace('"cat"', '"c\\ud800t"').encode()
    _, headers = signed(body)
    app = create_webhook_app(db, [SECRET], settings=WebhookSettings(normalise_interval_ms=50))
    with ThreadServer(app) as srv:
        r = httpx.post(srv.hook_url, content=body, headers=headers)
    assert (r.status_code, r.json()["outcome"]) == (200, "rejected")
    assert _rows(db, "SELECT outcome FROM webhook_deliveries") == [("rejected",)]
    assert _rows(db, "SELECT reason FROM rejects") == [("invalid_json",)]
    assert _rows(db, "SELECT count(*) FROM observations") == [(0,)]


@pytest.mark.parametrize(
    "encode",
    [lambda text: text.encode("utf-16-le"), lambda text: b"\xef\xbb\xbf" + text.encode()],
    ids=["utf16le", "utf8-bom"],
)
def test_webhooks_body_not_plain_utf8_json_is_rejected_as_the_normaliser_reads_it(db, encode):
    body = encode(json.dumps(payload("tsk_wide")))
    _, headers = signed(body)
    app = create_webhook_app(db, [SECRET], settings=WebhookSettings(normalise_interval_ms=50))
    with ThreadServer(app) as srv:
        r = httpx.post(srv.hook_url, content=body, headers=headers)
    assert (r.status_code, r.json()["outcome"]) == (200, "rejected")
    # not read as an object: no task id, no event key from its fields
    assert _rows(db, "SELECT outcome, task_id FROM webhook_deliveries") == [("rejected", None)]
    assert _rows(db, "SELECT reason FROM rejects") == [("invalid_json",)]


def test_track_refuses_a_csv_whose_header_holds_nul_bytes(tmp_path, db):
    # UTF-16 without a byte order mark: the header is read with a NUL after every letter
    path = tmp_path / "subs.csv"
    text = "task_id,task_type,consensus_threshold,options,created_at\nx1,c,3,a|b,2026-09-15\n"
    path.write_bytes(text.encode("utf-16-le"))
    with pytest.raises(InputError, match=r"NUL bytes: UTF-16 or UTF-32 text\?.*nothing stored$"):
        track_file(db, path)
