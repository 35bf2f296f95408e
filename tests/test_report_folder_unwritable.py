"""A report folder that cannot be written is found before any step runs: `audit` exits 2 with
nothing done and no run recorded, and the error names the report folder. It was found only
when the report was written, after every step (collect runs for minutes), with a `failed` run
recorded and an error naming the hidden staging folder.

The folder is made immutable (`chattr +i`) when the tests run as root, who ignores permission
bits, and `chmod 555` otherwise. Real stores; the real command in subprocesses.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from _audit_job import offline_job
from _hardening_procs import clean_env, query, read_only, run_asg_audit

import asg_audit as lib
from asg_audit.errors import ConfigError


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return run_asg_audit(*args, env=clean_env())


@pytest.mark.parametrize("below", ["", "sub/deeper"])
def test_audit_read_only_report_folder_exits_2_before_any_step(tmp_path: Path, below: str) -> None:
    job = offline_job(tmp_path, 4)
    ro = tmp_path / "ro"
    ro.mkdir()
    out = ro / below if below else ro
    with read_only(ro):
        done = _run("audit", "--config", str(job["config"]), "--out", str(out), "--json")
    assert done.returncode == 2, done.stderr[-3000:]
    (line,) = done.stderr.splitlines()  # no step line: nothing ran
    assert line.startswith(f"asg-audit: error: {out}: cannot write the report folder")
    assert ".tmp" not in line
    outcome = json.loads(done.stdout)
    assert outcome["exit_code"] == 2 and outcome["run_id"] is None and outcome["steps"] == {}
    assert query(job["db"], "SELECT count(*) FROM runs")[0][0] == 0  # no run recorded
    assert query(job["db"], "SELECT count(*) FROM results")[0][0] == 0  # the drop folder waits
    assert list(ro.iterdir()) == []  # the probe is gone
    # once the folder can be written the same job runs
    done = _run("audit", "--config", str(job["config"]), "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / "latest" / "index.html").is_file()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("below", ["", "sub"])
def test_audit_dangling_link_as_report_folder_exits_2_before_any_step(
    tmp_path: Path, below: str
) -> None:
    job = offline_job(tmp_path, 4)
    link = tmp_path / "reports"
    link.symlink_to(tmp_path / "nas" / "reports")  # a share that is not mounted
    out = link / below if below else link
    done = _run("audit", "--config", str(job["config"]), "--out", str(out), "--json")
    assert done.returncode == 2, done.stderr[-3000:]
    (line,) = done.stderr.splitlines()  # no step line: nothing ran (it ran every step first)
    assert line == (
        f"asg-audit: error: {out}: cannot be the report folder: {link} is a link to"
        f" {tmp_path / 'nas' / 'reports'}, which does not exist"
    )
    assert query(job["db"], "SELECT count(*) FROM runs")[0][0] == 0  # no run recorded


def test_report_read_only_folder_exits_2_naming_the_folder(tmp_path: Path) -> None:
    job = offline_job(tmp_path, 2)
    ro = tmp_path / "ro"
    ro.mkdir()
    with read_only(ro):
        done = _run("report", "--db", str(job["db"]), "--out", str(ro))
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.startswith(f"asg-audit: error: {ro}: cannot write the report folder")
    assert ".tmp" not in done.stderr and "Traceback" not in done.stderr


def test_render_into_read_only_folder_names_the_folder_not_the_staging_one(
    tmp_path: Path,
) -> None:
    job = offline_job(tmp_path, 2)
    audit = lib.analyze(job["db"])
    ro = tmp_path / "ro"
    ro.mkdir()
    with read_only(ro), pytest.raises(ConfigError) as raised:
        lib.render(audit, ro, formats="json", run_id="r1")
    assert str(raised.value).startswith(f"{ro}: cannot write the report")
    assert ".tmp" not in str(raised.value)
