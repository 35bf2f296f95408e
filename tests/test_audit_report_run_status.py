"""An incomplete `asg-audit audit` run's report says it is incomplete (tester, R3 defect 1).

With the Gateway down the run exits 3 and `runs` says `incomplete  collect failed: ...`; its
report read as complete (summary.json `findings_fail: 0`, no run status). The job now passes
its steps to `render`: summary.json has `run` (`status`: incomplete, the steps), and
index.html and report.md open with `Incomplete audit: collect failed: ...`. A complete run's
summary says `complete`. The real command in a subprocess; nothing listens on the port.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from _audit_job import offline_job, run_audit_json


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_gateway_down_report_says_incomplete(tmp_path: Path) -> None:
    job = offline_job(tmp_path, 3)
    text = job["config"].read_text(encoding="utf-8")
    job["config"].write_text(
        f'base_url = "http://127.0.0.1:{_closed_port()}"\n' + text, encoding="utf-8"
    )
    code, outcome, _ = run_audit_json(job["config"], env={"ASG_API_KEY": "sk_test_down"})
    assert code == 3, outcome
    folder = Path(outcome["report"])
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    assert summary["run"]["status"] == "incomplete"
    steps = {s["step"]: s for s in summary["run"]["steps"]}
    assert steps["collect"]["outcome"] == "failed"
    assert "unreachable" in steps["collect"]["detail"]
    assert steps["ingest"]["outcome"] == "ok"
    for name in ("index.html", "report.md"):
        assert "Incomplete audit: collect failed: the Gateway at" in (folder / name).read_text(
            encoding="utf-8"
        ).replace("\\", "")


def test_complete_run_report_says_complete(tmp_path: Path) -> None:
    job = offline_job(tmp_path, 3)
    code, outcome, _ = run_audit_json(job["config"])
    assert code == 0, outcome
    folder = Path(outcome["report"])
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    assert summary["run"]["status"] == "complete"
    assert [s["step"] for s in summary["run"]["steps"]][:2] == ["ingest", "collect"]
    assert "Incomplete audit" not in (folder / "index.html").read_text(encoding="utf-8")
