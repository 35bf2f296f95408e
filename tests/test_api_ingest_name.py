"""`asg_audit.ingest` is always the function the README calls, whatever was imported before.

The function's module used to be the submodule `asg_audit.ingest`: importing it (as
`ingest_paths`, `IngestSummary` or `run_audit` do) set the package's attribute `ingest` to the
module, and `asg_audit.ingest(...)` failed with "'module' object is not callable".
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

_CELLS = {
    "after ingest_paths": "asg_audit.ingest_paths",
    "after IngestSummary": "from asg_audit import IngestSummary",
    "after the module": "import asg_audit.ingest_files",
    "after jobs": "import asg_audit.jobs",
}


@pytest.mark.parametrize("before", sorted(_CELLS))
def test_ingest_stays_the_function(before: str, tmp_path: Path) -> None:
    export = tmp_path / "a.ndjson"
    export.write_text('{"task_id": "tsk_1", "status": "pending"}\n', encoding="utf-8")
    code = (
        "import sys, asg_audit\n"
        f"{_CELLS[before]}\n"
        "from asg_audit import ingest\n"
        "assert asg_audit.ingest is ingest and callable(ingest), ingest\n"
        "assert ingest.__doc__ and 'store' in ingest.__doc__\n"
        "s = asg_audit.ingest(sys.argv[1], sys.argv[2])\n"
        "print(s.records)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "s.duckdb"), str(export)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
