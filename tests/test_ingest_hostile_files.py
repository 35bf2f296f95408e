"""Tester T, files: a deeply nested broken `.json` fails that file alone (it crashed `ingest`
with a RecursionError and lost the other files of its group); `track` refuses an NDJSON object
repeating a key (it kept the last value silently) and says what an unterminated CSV quote did
(it swallowed every later row under a misleading 'missing' reason)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from _hardening_procs import query

REPO = Path(__file__).parents[1]
TXID = "ab" * 32
GOOD = {
    "task_id": "tsk_ok1",
    "status": "settled",
    "consensus_label": "a",
    "confidence": 1.0,
    "worker_count": 3,
    "agreement_count": 3,
    "created_at": "2026-09-15T05:49:59Z",
    "settlement": {
        "bsv_txid": TXID,
        "total_cost_sats": 975,
        "settled_at": "2026-09-15T05:50:36Z",
    },
}
CSV_HEADER = "task_id,task_type,consensus_threshold,options,created_at\n"
WHEN = "2026-09-15T05:49:59Z"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asg_audit", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )


# --- ingest: deep broken JSON (#1) ---


def test_deep_broken_json_fails_alone_and_the_other_files_are_stored(tmp_path: Path) -> None:
    good = tmp_path / "a_good.ndjson"
    good.write_text(json.dumps(GOOD) + "\n")
    deep = tmp_path / "deep.json"  # 1,000 unclosed '[' (the tester's repro)
    deep.write_text("[" * 1000 + "\n")
    pretty = tmp_path / "pretty.json"  # a pretty-printed document cut deep inside
    pretty.write_text('{\n  "a": ' + "[" * 2000 + "\n")
    huge = tmp_path / "huge.json"  # 100,000 levels
    huge.write_text("[" * 100_000 + "\n")
    big = tmp_path / "big.json"  # over the small-file size: streamed in its own transaction
    big.write_text("[" * 5000 + " " * (1 << 20) + "\n")
    db = tmp_path / "s.duckdb"
    proc = cli("ingest", "--quiet", "--db", str(db), str(good), str(deep), str(pretty), str(huge))
    proc_big = cli("ingest", "--quiet", "--db", str(db), str(big))
    for p in (proc, proc_big):
        assert p.returncode == 2, p.stderr
        assert "Traceback" not in p.stderr and "RecursionError" not in p.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("asg-audit: error:")]
    assert errors == [
        f"asg-audit: error: {deep}: not a readable JSON array: expecting value: line 2,"
        " column 1; nothing stored",
        f"asg-audit: error: {pretty}: not a readable JSON document: expecting value: line 3,"
        " column 1 (document 1); nothing stored",
        f"asg-audit: error: {huge}: not a readable JSON array: expecting value: line 2,"
        " column 1; nothing stored",
    ]
    assert (
        f"asg-audit: error: {big}: not a readable JSON array: expecting value: line 2,"
        " column 1; nothing stored"
    ) in proc_big.stderr
    # the good file of the same group is stored, and only it
    assert query(db, "SELECT task_id FROM results") == [("tsk_ok1",)]
    assert query(db, "SELECT path FROM ingested_files") == [(str(good),)]
    runs = cli("runs", "--db", str(db)).stdout
    assert "failed  3 of 4 files could not be read; first: " in runs


def _reference_errors(texts: list[str], layout: str) -> list[tuple[str, int, int] | None]:
    """What Python's json itself reports for deep texts: run where it can recurse that deep
    (a thread with a large stack and a raised recursion limit), then the limit restored."""
    out: list[tuple[str, int, int] | None] = []

    def read_all() -> None:
        decoder = json.JSONDecoder()
        for text in texts:
            pos, number = 0, 0
            try:
                if layout == "array":
                    number = 1
                    json.loads(text)
                else:
                    while True:
                        while pos < len(text) and text[pos] in " \t\r\n":
                            pos += 1
                        if pos >= len(text):
                            break
                        number += 1
                        pos = decoder.raw_decode(text, pos)[1]
                out.append(None)
            except json.JSONDecodeError as exc:
                out.append((exc.msg, exc.pos, number))

    limit, stack = sys.getrecursionlimit(), threading.stack_size()
    sys.setrecursionlimit(100_000)
    threading.stack_size(512 << 20)
    try:
        reader = threading.Thread(target=read_all)
        reader.start()
        reader.join()
    finally:
        threading.stack_size(stack)
        sys.setrecursionlimit(limit)
    assert len(out) == len(texts)
    return out


@pytest.mark.parametrize("layout", ["array", "documents"])
def test_json_error_at_deep_gives_json_loads_error_and_place(layout: str) -> None:
    """Past the recursion limit, the error found is the one json itself reports, at the same
    place and in the same document."""
    from asg_audit.filelines import json_error_at  # new: the old code had no such function

    random.seed(7)
    tokens = ["[", "]", "{", "}", ",", ":", '"a"', '"b\\x"', "1", "-", "true", "nu", " ", "\n"]
    snippets = ["1 2", '{"a" 1}', '{"a":1,}', '"abc', "[1,]", "{1:2}", '["a\\x"]', "tru"]
    snippets += ["[1\n,\n  x]", '{"k": "v\n"}', "", "1]]"]
    snippets += ["".join(random.choices(tokens, k=random.randint(1, 12))) for _ in range(300)]
    texts = []
    for snippet in snippets:
        depth = random.choice([1500, 5000])
        prefix = random.choice(["", '{"a": ', "[1, "])
        deep = prefix + "[" * depth + snippet + "]" * depth + ("}" if prefix[:1] == "{" else "")
        texts.append(("{} " if layout == "documents" else "") + deep)
    want = _reference_errors(texts, layout)
    assert sum(w is not None for w in want) > 200
    for text, expected in zip(texts, want, strict=True):
        found = json_error_at(text, layout)
        got = None if found is None else (found[0].msg, found[0].pos, found[1])
        assert got == expected, text[-80:]
    # valid at any depth: no error
    assert json_error_at("[" * 200_000 + "]" * 200_000, layout) is None


# --- track: repeated keys (#2) ---


def test_track_refuses_an_object_repeating_a_key_at_any_depth(tmp_path: Path) -> None:
    path = tmp_path / "subs.ndjson"
    spec = {"options": ["a", "b"]}
    good = {"task_id": "tsk_good", "type": "cls", "consensus_threshold": 3, "label_spec": spec}
    lines = [
        '{"task_id":"tsk_first","task_id":"tsk_last","type":"cls","consensus_threshold":3}',
        '{"task_id":"tsk_n","type":"cls","consensus_threshold":3,'
        '"label_spec":{"options":["a","b"],"options":["c"]},"created_at":"' + WHEN + '"}',
        '{"task_id":"tsk_l","extra":[{"x":1},{"a.b":1,"a.b":2}]}',
        json.dumps({**good, "created_at": WHEN}),
    ]
    path.write_text("\n".join(lines) + "\n")
    db = tmp_path / "s.duckdb"
    proc = cli("track", "--db", str(db), str(path))
    assert proc.returncode == 0, proc.stderr
    assert "4 rows: 1 new tasks, 0 updated, 0 unchanged, 0 duplicates, 3 rejected" in proc.stdout
    tail = ": the object can be read two ways (first or last value), so it is not used"
    assert query(db, "SELECT task_id FROM submissions") == [("tsk_good",)]
    assert query(
        db,
        "SELECT origin_line, reason, field, detail FROM rejects"
        " WHERE source = 'submissions' ORDER BY origin_line",
    ) == [
        # the field is the key's path, as the receiver and the normaliser name it
        (1, "invalid_json", "task_id", f'task_id: duplicate key "task_id"{tail}'),
        (
            2,
            "invalid_json",
            "label_spec.options",
            f'label_spec.options: duplicate key "options"{tail}',
        ),
        (3, "invalid_json", 'extra[1]["a.b"]', f'extra[1]["a.b"]: duplicate key "a.b"{tail}'),
    ]
    assert f'{path}:2: label_spec.options: duplicate key "options"{tail}' in proc.stderr


def test_track_refuses_an_object_nested_past_the_receivers_limit(tmp_path: Path) -> None:
    path = tmp_path / "deep.ndjson"
    record = '{"task_id":"tsk_deep","type":"cls","x":' + "[" * 600 + "]" * 600 + "}"
    path.write_text(record + "\n")
    db = tmp_path / "s.duckdb"
    proc = cli("track", "--db", str(db), str(path))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    assert query(db, "SELECT count(*) FROM submissions") == [(0,)]
    assert query(db, "SELECT reason, detail FROM rejects") == [
        ("invalid_json", "not valid JSON (arrays/objects nested 601 levels, over 512)")
    ]


# --- track: CSV (#2 header, #6 unterminated quote) ---


def test_track_csv_unterminated_quote_names_the_lines_it_swallowed(tmp_path: Path) -> None:
    row = ",cls,3,a|b," + WHEN + "\n"
    path = tmp_path / "q.csv"
    path.write_text(CSV_HEADER + '"tsk_a' + row + "tsk_b" + row + "tsk_c" + row)
    db = tmp_path / "s.duckdb"
    proc = cli("track", "--db", str(db), str(path))
    assert proc.returncode == 0, proc.stderr
    detail = (
        "task_id: unterminated quoted field from line 2 to the end of the file (lines 2-4):"
        " a quote opens a field that no quote closes, so lines 3-4 are read as part of it,"
        " not as rows"
    )
    assert f"{path}:2: {detail}" in proc.stderr
    assert "missing" not in proc.stderr
    assert query(db, "SELECT origin_line, reason, field, detail FROM rejects") == [
        (2, "bad_submission", "task_id", detail)
    ]
    # a quote left open on the last line only: the rows before it are stored
    last = tmp_path / "last.csv"
    last.write_text(CSV_HEADER + "tsk_a" + row + 'tsk_b,cls,3,"a|b,' + WHEN + "\n")
    proc = cli("track", "--db", str(db), str(last))
    assert "2 rows: 1 new tasks" in proc.stdout
    assert (
        f"{last}:3: options: unterminated quoted field on line 3, the last line of the file"
        in proc.stderr
    )
    # in the header: the file fails
    head = tmp_path / "head.csv"
    head.write_text('"' + CSV_HEADER + "tsk_a" + row)
    proc = cli("track", "--db", str(db), str(head))
    assert proc.returncode == 2
    assert (
        f"{head}: the header: unterminated quoted field from line 1 to the end of the file"
        " (lines 1-2)"
    ) in proc.stderr


@pytest.mark.parametrize(
    ("header", "named"),
    [
        ("task_id,task_id," + CSV_HEADER[len("task_id,") :], "task_id twice (columns 1 and 2)"),
        (
            CSV_HEADER.rstrip("\n") + ",type\n",
            "task_type twice (as task_type and type, columns 2 and 6)",
        ),
    ],
)
def test_track_csv_header_naming_a_column_twice_fails_the_file(
    tmp_path: Path, header: str, named: str
) -> None:
    path = tmp_path / "h.csv"
    path.write_text(header + "tsk_a,cls,3,a|b," + WHEN + ",x\n")
    db = tmp_path / "s.duckdb"
    proc = cli("track", "--db", str(db), str(path))
    assert proc.returncode == 2
    assert (
        f"asg-audit: error: {path}: the header names {named}: which of its columns counts is"
        " ambiguous; nothing stored"
    ) in proc.stderr
