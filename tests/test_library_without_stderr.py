"""Library calls work in a process with no standard error (`sys.stderr` None: pythonw, some
daemons): `ingest_paths(..., progress=True)` asked `sys.stderr.isatty()` and crashed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
sys.stderr = None
from asg_audit.ingest_files import ingest_paths
summary = ingest_paths(sys.argv[1], [sys.argv[2]], progress=True)
print(summary.records, summary.accepted)
"""


def test_ingest_with_progress_and_no_stderr_ingests(tmp_path: Path) -> None:
    export = tmp_path / "a.ndjson"
    export.write_text(
        '{"task_id": "tsk_1", "status": "pending"}\n{"task_id": "tsk_2", "status": "pending"}\n'
    )
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "s.duckdb"), str(export)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["2", "2"]
