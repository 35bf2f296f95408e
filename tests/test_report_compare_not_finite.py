"""`--compare` with an earlier summary.json holding `NaN`, `Infinity` or `1e999` (numbers Python
reads and JSON has not): refused with exit 2 naming the file and the field, never copied into
the new summary.json, which is strict JSON. Such a summary was accepted and the new summary held
`"previous": Infinity, "change": -Infinity`, which JSON parsers refuse.

Real stores; the real command in subprocesses, offline.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from _audit_job import offline_job
from _hardening_procs import clean_env, query, run_asg_audit

from asg_audit.errors import InputError
from asg_audit.report.compare import load_summary


def _strict(text: str) -> Any:
    """Parse JSON as the standard says: NaN and Infinity are not JSON."""

    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return run_asg_audit(*args, env=clean_env())


@pytest.fixture
def job(tmp_path: Path) -> dict[str, Any]:
    """An offline job that has written one report (`first`), compared with nothing."""
    job: dict[str, Any] = offline_job(tmp_path, 4)
    done = _run("audit", "--config", str(job["config"]), "--format", "json", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    job["first"] = json.loads(done.stdout)["run_id"]
    return job


@pytest.mark.parametrize(
    "token, field",
    [
        ("1e999", "headline.latency_p50_s"),
        ("NaN", "headline.latency_p50_s"),
        ("-Infinity", "headline.tasks"),
    ],
)
def test_compare_with_a_summary_holding_a_number_json_has_not_exits_2(
    job: dict[str, Any], token: str, field: str
) -> None:
    reports: Path = job["reports"]
    good = (reports / job["first"] / "summary.json").read_text()
    key = field.split(".")[1]
    value = _strict(good)["headline"][key]
    assert isinstance(value, int | float)
    damaged = reports / "X"
    damaged.mkdir()
    text = good.replace(f'"{key}": {json.dumps(value)}', f'"{key}": {token}', 1)
    assert text != good
    (damaged / "summary.json").write_text(text)
    with pytest.raises(InputError, match=rf"{field} is not a finite number"):
        load_summary(damaged / "summary.json")
    runs_before = query(job["db"], "SELECT count(*) FROM runs WHERE command = 'audit'")
    done = _run("audit", "--config", str(job["config"]), "--compare", "X", "--json")
    assert done.returncode == 2, done.stderr[-3000:]
    (line,) = done.stderr.splitlines()
    assert str(damaged / "summary.json") in line and f"{field} is not a finite number" in line
    assert query(job["db"], "SELECT count(*) FROM runs WHERE command = 'audit'") == runs_before


def test_compare_with_a_finding_value_json_has_not_exits_2(tmp_path: Path) -> None:
    job = offline_job(tmp_path, 4)
    summary = {
        "schema": "asg_audit.summary",
        "schema_version": 1,
        "headline": {},
        "findings": [{"check_id": "c", "entity_type": "task", "entity_id": "w1", "actual": 1.5}],
    }
    earlier = job["reports"] / "X"
    earlier.mkdir(parents=True)
    (earlier / "summary.json").write_text(json.dumps(summary).replace("1.5", "NaN"))
    done = _run("audit", "--config", str(job["config"]), "--compare", "X")
    assert done.returncode == 2, done.stderr[-3000:]
    assert "findings[0].actual is not a finite number" in done.stderr


def test_summary_json_written_with_a_comparison_is_strict_json(job: dict[str, Any]) -> None:
    done = _run("audit", "--config", str(job["config"]), "--compare", "previous", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = json.loads(done.stdout)["run_id"]
    doc = _strict((job["reports"] / run_id / "summary.json").read_text())
    assert doc["compare"]["previous_run_id"] == job["first"]
