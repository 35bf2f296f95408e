"""A report's run folder follows the umask, like the files in it.

It was made by `tempfile.mkdtemp` (0700) and renamed into place, so with umask 022 the files
were 0644 but nobody else could enter the folder: `reports/latest/index.html` could not be
served or read by a colleague. The real command, in a subprocess with its own umask.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from _hardening_procs import asg_audit, clean_env

from asg_audit.ingest_files import ingest_paths

_LINE = (
    '{{"task_id":"w{i}","status":"settled","consensus_label":"cat","confidence":1.0,'
    '"worker_count":3,"agreement_count":3,"bsv_txid":"{i:064x}",'
    '"created_at":"2026-04-08T21:00:00Z","settled_at":"2026-04-08T21:00:47Z","cost_sats":975}}\n'
)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("folder_mode")
    export = tmp / "r.ndjson"
    export.write_text("".join(_LINE.format(i=i) for i in range(1, 4)))
    path = tmp / "s.duckdb"
    ingest_paths(path, [export], progress=False)
    return path


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_report_run_folder_follows_the_umask(db: Path, tmp_path: Path, umask: int) -> None:
    out = tmp_path / "reports"
    out.mkdir()
    proc = subprocess.run(
        asg_audit("report", "--db", str(db), "--out", str(out), "--format", "html,md,json"),
        capture_output=True, text=True, env=clean_env(), timeout=120,
        preexec_fn=lambda: os.umask(umask),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    run = out / (out / "LATEST").read_text().strip()
    assert stat.S_IMODE(run.stat().st_mode) == 0o777 & ~umask
    for name in ("index.html", "report.md", "summary.json"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((out / "latest").stat().st_mode) == 0o777 & ~umask  # through the link
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no staging left
