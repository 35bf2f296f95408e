"""`--compare` across reports of different windows: nothing is resolved (or new) merely because
the window changed.

`report --until U` then `report --since <month start> --until U --compare previous` on one
unchanged store listed every finding before the new `since` as resolved (`billing.total_parts`
of the month before, still broken, among them), and the reverse listed them as new. The store
does not change between the reports here, so no finding is truly resolved or new: the
comparison must say the windows differ and list those findings apart.
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _browser import chromium, console_lines
from _hardening_procs import clean_env, query, run_asg_audit

from asg_audit.audit import analyze
from asg_audit.errors import InputError
from asg_audit.report import render
from asg_audit.report.compare import load_summary

Key = tuple[str, str, str]


def _key(f: dict[str, Any]) -> Key:
    return (str(f["check_id"]), str(f["entity_type"]), str(f["entity_id"]))


def _keys(rows: list[dict[str, Any]]) -> set[Key]:
    return {_key(f) for f in rows}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    proc = run_asg_audit(*args, env=clean_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small demo store (tasks over two months, billed, chain-verified) and its windows."""
    tmp = tmp_path_factory.mktemp("compare_windows")
    _run("demo", "--out", str(tmp / "demo"), "--tasks", "400", "--time-scale", "0.005",
         "--faults", "none")  # fmt: skip
    db = tmp / "demo" / "demo.duckdb"
    (first, last), *_ = query(db, "SELECT min(created_at), max(created_at) FROM results")
    last = last.astimezone(UTC)
    since = last.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    until = last.replace(second=0, microsecond=0)  # as the README's example: before the end
    assert first.astimezone(UTC) < since, "the store must hold tasks before the last month"
    return {"tmp": tmp, "db": db, "since": since, "until": until}


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%MZ")


def _month_before(since: datetime) -> str:
    return (since.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")


def _latest(out: Path) -> tuple[Path, dict[str, Any]]:
    folder = out / (out / "LATEST").read_text().strip()
    return folder, json.loads((folder / "summary.json").read_text(encoding="utf-8"))


def _section(text: str, start: str, end: str) -> str:
    """Return the part of `text` from the heading `start` up to the next heading `end`."""
    i = text.index(start)
    return text[i : text.index(end, i + len(start))]


@pytest.fixture(scope="module")
def narrowed(demo: dict[str, Any]) -> dict[str, Any]:
    """The repro: the whole store up to `until`, then only its last month, compared."""
    out = demo["tmp"] / "narrowed"
    _run("report", "--db", str(demo["db"]), "--out", str(out), "--format", "json",
         "--until", _iso(demo["until"]))  # fmt: skip
    _, before = _latest(out)
    _run("report", "--db", str(demo["db"]), "--out", str(out), "--since", _iso(demo["since"]),
         "--until", _iso(demo["until"]), "--compare", "previous")  # fmt: skip
    folder, after = _latest(out)
    return {"before": before, "after": after, "folder": folder}


def test_fix11_U_narrower_window_resolves_nothing(narrowed: dict[str, Any], demo) -> None:
    before, after = narrowed["before"], narrowed["after"]
    cmp = after["compare"]
    # the store did not change: nothing was fixed, so nothing may be called resolved
    assert cmp["resolved_findings"] == [], [_key(f) for f in cmp["resolved_findings"]]
    assert cmp["new_findings"] == []
    assert cmp["same_window"] is False
    gone = _keys(before["findings"]) - _keys(after["findings"])
    assert gone, "the narrower window must leave some findings out"
    assert _keys(cmp["outside_window_findings"]) == gone
    # every earlier finding is accounted for once: in both, or outside this window
    assert cmp["unchanged_findings"] + len(cmp["outside_window_findings"]) == len(
        before["findings"]
    )
    month = _month_before(demo["since"])
    assert ("billing.total_parts", "month", month) in _keys(cmp["outside_window_findings"])
    assert cmp["previous_window"] == before["window"] != after["window"]
    note = cmp["window_note"]
    assert before["window"]["until"] in note and after["window"]["since"] in note


def test_fix11_U_narrower_window_html_and_markdown_say_so(narrowed: dict[str, Any]) -> None:
    cmp = narrowed["after"]["compare"]
    n = len(cmp["outside_window_findings"])
    html = (narrowed["folder"] / "index.html").read_text(encoding="utf-8")
    md = (narrowed["folder"] / "report.md").read_text(encoding="utf-8")
    assert 'id="compare-window"' in html and "different windows" in html
    assert "Resolved findings (0)" in html and "Resolved findings (0)" in md
    part = _section(html, "Outside this report's window", "</section>")
    assert f"({n:,})" in part and "billing.total_parts" in part
    assert "not called resolved" in part
    assert "**Different windows.**" in md
    md_part = _section(md, "### Outside this report's window", "\n## ")
    assert f"({n:,})" in md_part and "billing.total\\_parts" in md_part
    assert md_part.count("\n| ") == 2 + min(n, 50)  # header, rule, one row per finding shown


def test_fix11_U_wider_window_calls_nothing_new(demo: dict[str, Any], tmp_path: Path) -> None:
    """The reverse: the last month, then everything up to `until`: nothing is new."""
    part = analyze(demo["db"], since=demo["since"], until=demo["until"], as_of=demo["until"])
    whole = analyze(demo["db"], until=demo["until"], as_of=demo["until"])
    first = render(part, tmp_path, formats="json", run_id="r1").summary
    out = render(whole, tmp_path, formats="html,md,json", run_id="r2", compare="previous")
    cmp = out.summary["compare"]
    assert cmp["new_findings"] == [], [_key(f) for f in cmp["new_findings"]]
    assert cmp["resolved_findings"] == []
    appeared = _keys(out.summary["findings"]) - _keys(first["findings"])
    assert appeared and _keys(cmp["outside_previous_window_findings"]) == appeared
    month = _month_before(demo["since"])
    assert ("billing.total_parts", "month", month) in appeared
    html = out.paths["html"].read_text(encoding="utf-8")
    part_html = _section(html, "Outside the previous report's window", "<h3>")
    assert f"({len(appeared):,})" in part_html and "not called new" in part_html


def _edited(summary: dict[str, Any], extra: list[dict[str, Any]]) -> dict[str, Any]:
    doc = json.loads(json.dumps(summary))
    doc["findings"] = doc["findings"] + extra
    return doc


def _finding(check_id: str, entity_type: str, entity_id: str) -> dict[str, Any]:
    return {"check_id": check_id, "severity": "fail", "entity_type": entity_type,
            "entity_id": entity_id, "expected": "x", "actual": "y", "difference": None}  # fmt: skip


def _compare_with(out: Path, previous: dict[str, Any], audit: Any) -> dict[str, Any]:
    """Write `previous` as report p1 in `out`, then render `audit` compared with it."""
    (out / "p1").mkdir(parents=True)
    (out / "p1" / "summary.json").write_text(json.dumps(previous), encoding="utf-8")
    return render(audit, out, formats="json", run_id="c2", compare="p1").summary["compare"]


def test_fix11_U_a_finding_this_window_covers_is_still_resolved(
    demo: dict[str, Any], tmp_path: Path
) -> None:
    """Windows differ, yet what the current audit judged and did not find is resolved: a task
    of the earlier window when this window holds it all, a month this window wholly covers."""
    until = demo["until"]
    since = demo["since"]
    month = _month_before(since)
    month_start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    # earlier: the last month alone, with a task finding this audit (everything) does not have
    earlier = analyze(demo["db"], since=since, until=until, as_of=until)
    prev = render(earlier, tmp_path / "a", formats="json", run_id="x").summary
    fixed_task = _finding("task.stuck", "task", "tsk_fixed_since")
    whole_window = _finding("cost.unknown", "dataset", "settled tasks (fixed?)")
    prev = _edited(prev, [fixed_task, whole_window])
    cmp = _compare_with(tmp_path / "b", prev, analyze(demo["db"], until=until, as_of=until))
    assert cmp["same_window"] is False
    assert _key(fixed_task) in _keys(cmp["resolved_findings"])
    # a finding about the whole window is never resolved by another window
    assert _key(whole_window) in _keys(cmp["outside_window_findings"])
    # earlier: everything; now: exactly the month before `since`, wholly covered
    everything = analyze(demo["db"], until=until, as_of=until)
    prev = render(everything, tmp_path / "c", formats="json", run_id="x").summary
    fixed_month = _finding("billing.daily_sum", "month", month)
    later_month = _finding("billing.daily_sum", "month", since.strftime("%Y-%m"))
    prev = _edited(prev, [fixed_month, later_month])
    now = analyze(demo["db"], since=month_start, until=since, as_of=until)
    cmp = _compare_with(tmp_path / "d", prev, now)
    assert _key(fixed_month) in _keys(cmp["resolved_findings"])
    assert _key(later_month) in _keys(cmp["outside_window_findings"])
    assert all(f["entity_type"] == "month" for f in cmp["resolved_findings"])


def test_fix11_U_same_window_compares_as_before(demo: dict[str, Any], tmp_path: Path) -> None:
    audit = analyze(demo["db"], until=demo["until"], as_of=demo["until"])
    prev = render(audit, tmp_path / "a", formats="json", run_id="x").summary
    gone = _finding("task.stuck", "task", "tsk_fixed_since")
    cmp = _compare_with(tmp_path / "b", _edited(prev, [gone]), audit)
    assert cmp["same_window"] is True and cmp["window_note"] is None
    assert _keys(cmp["resolved_findings"]) == {_key(gone)}
    assert cmp["outside_window_findings"] == cmp["outside_previous_window_findings"] == []
    assert cmp["new_findings"] == []


def test_fix11_U_a_damaged_window_is_refused(tmp_path: Path) -> None:
    for window, field in (("2026", "window is"), ({"since": "yesterday"}, "window.since"),
                          ({"until": 5}, "window.until")):  # fmt: skip
        path = tmp_path / "summary.json"
        doc = {"schema": "asg_audit.summary", "schema_version": 1, "window": window}
        path.write_text(json.dumps(doc), encoding="utf-8")
        with pytest.raises(InputError, match=re.escape(field)):
            load_summary(path)


@pytest.mark.browser
def test_fix11_U_compare_across_windows_in_a_real_browser(
    narrowed: dict[str, Any], tmp_path: Path
) -> None:
    page = narrowed["folder"] / "index.html"
    run = chromium(page, tmp_path / "profile", "--dump-dom")
    dom = run.stdout
    assert re.search(r'<p class="meta" id="compare-window"><strong>Different windows', dom)
    n = len(narrowed["after"]["compare"]["outside_window_findings"])
    part = _section(dom, 'id="compare-outside-window"', "</section>")
    assert part.count("<tr>") == 1 + min(n, 50)  # header row and one per finding
    assert console_lines(run) == []
