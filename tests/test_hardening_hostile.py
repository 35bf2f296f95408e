"""Hostile content through ingest, analyses and every report format, and the commands' output.

Labels, task ids, txids, task types, options, error messages and file names carry markup,
control characters and ANSI escapes, Unicode direction overrides, SQL-looking text and huge
lengths. Expected: they are stored as data (SQL never built from them), the HTML report holds no
element or attribute they injected, every Markdown table row has its header's column count,
`summary.json` parses and gives the strings back exactly, and no command prints a raw control
character, escape sequence or direction override that came from the data.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from _hardening_procs import asg_audit, clean_env, query

from asg_audit.audit import analyze
from asg_audit.config import AuditConfig
from asg_audit.ingest_files import ingest_paths, track_file
from asg_audit.report import render

SCRIPT = "<script>alert('x')</script>"
IMG = '<img src=x onerror="alert(1)">'
SQL = "'; DROP TABLE results; --"
RLO = "\u202egnp.exe"  # shows as "exe.png"
ANSI = "\x1b[31mRED\x1b[0m\x07\x08\r"
PIPES = "a | b\n| c |\t`d`"
HUGE = "H" * 200_000
HOSTILE_LABELS = [SCRIPT, IMG, SQL, RLO, ANSI, PIPES, HUGE, "[x](javascript:alert(1))"]
HOSTILE_FILE = f"exp-{ANSI}{RLO}<b>.ndjson"
# Control characters a terminal acts on (C0 but newline and tab, DEL, C1) and bidi controls.
TERMINAL_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


def _records() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return (submissions, results): one settled task per hostile label, plus hostile ids."""
    subs, results = [], []
    for i, label in enumerate(HOSTILE_LABELS):
        task_id = f"tsk_hostile_{i:02d}"
        subs.append(
            {
                "task_id": task_id,
                "task_type": f"{SCRIPT}{RLO}",
                "consensus_threshold": 3,
                "label_spec": {"options": ["cat", IMG, SQL]},
                "created_at": "2026-10-01T10:00:00Z",
            }
        )
        results.append(
            {
                "task_id": task_id,
                "status": "settled",
                "consensus_label": label,
                "confidence": 0.5,
                "worker_count": 3,
                "agreement_count": 2,  # fits neither formula
                "bsv_txid": [f"{SCRIPT}{ANSI}", "ab" * 32, SQL, RLO][i % 4],
                "total_cost_sats": 12345,
                "task_type": f"{IMG}{ANSI}",
                "created_at": "2026-10-01T10:00:00Z",
                "settled_at": "2026-10-01T10:00:40Z",
            }
        )
    results += [
        {"task_id": f"tsk_{SCRIPT}", "status": "settled"},  # unsafe ids end in rejects
        {"task_id": f"tsk_x{SQL}", "status": "settled"},
        {"task_id": f"tsk_{RLO}", "status": "settled"},
        {"task_id": "tsk_hostile_err", "error": f"{SCRIPT}{ANSI}{RLO}{SQL}"},
        {"task_id": "tsk_hostile_err2", "error": {"message": IMG, "code": ANSI}},
    ]
    return subs, results


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("hostile")
    subs, results = _records()
    (tmp / "subs.ndjson").write_text("".join(json.dumps(s) + "\n" for s in subs))
    export = tmp / HOSTILE_FILE
    export.write_text("".join(json.dumps(r) + "\n" for r in results) + f"not json {SCRIPT}{ANSI}\n")
    db = tmp / "audit.duckdb"
    track_file(db, tmp / "subs.ndjson")
    ingest_paths(db, [export])
    audit = analyze(db, config=AuditConfig(), as_of=AS_OF)
    rendered = render(audit, tmp / "reports", formats=("html", "md", "json"))
    return {"tmp": tmp, "db": db, "audit": audit, "rendered": rendered, "export": export}


def test_hardening_hostile_text_is_stored_as_data(hostile: dict[str, Any]) -> None:
    db = hostile["db"]
    labels = {r[0] for r in query(db, "SELECT consensus_label FROM results")}
    assert set(HOSTILE_LABELS) <= labels  # exactly as sent, huge one included
    assert query(db, "SELECT count(*) FROM results WHERE task_id LIKE 'tsk_hostile_%'")[0][0] >= 8
    reasons = {r[0] for r in query(db, "SELECT reason FROM rejects")}
    assert {"unsafe_task_id", "invalid_json"} <= reasons
    errors = {
        r[0]
        for r in query(db, "SELECT error_message FROM observations WHERE error_message IS NOT NULL")
    }
    assert any(SQL in (e or "") for e in errors)


def test_hardening_hostile_findings_carry_the_hostile_text(hostile: dict[str, Any]) -> None:
    findings = hostile["audit"].findings
    text = " ".join(str(v) for row in findings.iter_rows() for v in row)
    # the report below really gets to show them (each option quoted, written as it is)
    assert SCRIPT in text and IMG in text


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_hardening_hostile_html_has_no_injected_element(hostile: dict[str, Any]) -> None:
    html = hostile["rendered"].paths["html"].read_text(encoding="utf-8")
    page = _Elements()
    page.feed(html)
    assert not [t for t, _ in page.tags if t in ("script", "iframe", "object", "embed", "b")]
    assert not [(t, k) for t, a in page.tags for k in a if k.lower().startswith("on")]
    assert all(
        str(a.get("src", "")).startswith("data:image/png;base64,")
        for t, a in page.tags
        if t == "img"
    )
    assert not [
        a["href"]
        for t, a in page.tags
        if t == "a"
        and a.get("href")
        and not str(a["href"]).startswith(("https://whatsonchain.com/tx/", "#"))
    ]
    shown = "".join(page.text)
    assert SCRIPT in shown or "alert('x')" in shown  # shown as text, not run


def _md_cells(row: str) -> int:
    """Count the cells of a Markdown table row, honouring `\\|` escapes."""
    return len(re.split(r"(?<!\\)\|", row.strip().strip("|"))) if row.strip() else 0


def test_hardening_hostile_markdown_tables_keep_their_columns(hostile: dict[str, Any]) -> None:
    md = hostile["rendered"].paths["md"].read_text(encoding="utf-8")
    tables, current = [], []
    for line in md.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    assert tables
    for table in tables:
        widths = {_md_cells(row) for row in table}
        assert len(widths) == 1, table[:3]
    assert "<script" not in md and "<img" not in md
    assert not TERMINAL_UNSAFE.findall(md)
    assert "\\x1b\\[31mRED" in md  # shown, escaped


def test_hardening_hostile_summary_json_gives_the_strings_back(hostile: dict[str, Any]) -> None:
    summary = json.loads(hostile["rendered"].paths["json"].read_text(encoding="utf-8"))
    actual = {f["actual"] for f in summary["findings"]} | {
        f["entity_id"] for f in summary["findings"]
    }
    assert SCRIPT in actual or IMG in actual


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        asg_audit(*args), env=clean_env(), cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_hardening_hostile_commands_print_no_terminal_control_from_data(
    hostile: dict[str, Any], tmp_path: Path
) -> None:
    db = tmp_path / "cli.duckdb"
    tmp = hostile["tmp"]
    bad_subs = tmp_path / f"subs-{ANSI}.csv"
    bad_subs.write_text(
        "task_id,task_type,consensus_threshold,options,created_at\n"
        f"tsk_1,{SCRIPT}{ANSI},3,cat|{RLO},2026-10-01T10:00:00Z\n"
        f"tsk_{ANSI},x,99,cat,{RLO}\n"
    )
    outputs = [
        _run("track", str(tmp / "subs.ndjson"), "--db", str(db), cwd=tmp_path),
        _run("track", str(bad_subs), "--db", str(db), cwd=tmp_path),
        _run("ingest", str(hostile["export"]), "--db", str(db), cwd=tmp_path),
        _run("ingest", str(tmp_path / f"missing-{ANSI}.ndjson"), "--db", str(db), cwd=tmp_path),
        _run("db", "info", "--db", str(db), cwd=tmp_path),
        _run("runs", "--db", str(db), cwd=tmp_path),
        _run("report", "--db", str(db), "--out", str(tmp_path / "r"), cwd=tmp_path),
    ]
    assert [p.returncode for p in outputs] == [0, 0, 0, 2, 0, 0, 0], [p.stderr for p in outputs]
    for proc in outputs:
        for stream in (proc.stdout, proc.stderr):
            assert not TERMINAL_UNSAFE.findall(stream), (proc.args[3:5], stream[-500:])
    assert "Traceback" not in "".join(p.stderr for p in outputs)
