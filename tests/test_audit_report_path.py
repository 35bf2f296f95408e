"""`audit` prints the path of the report file it wrote: with `--format json` or `md` it printed
`<run>/index.html`, a file it never wrote. The real command in subprocesses, offline."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from _audit_job import offline_job
from _hardening_procs import asg_audit, clean_env


@pytest.mark.parametrize(
    "formats, shown",
    [
        ("json", "summary.json"),
        ("md", "report.md"),
        ("md,json", "report.md"),
        ("html", "index.html"),
    ],
)
def test_audit_prints_the_path_of_a_file_it_wrote(tmp_path: Path, formats: str, shown: str) -> None:
    job = offline_job(tmp_path, 2)
    done = subprocess.run(
        asg_audit("audit", "--config", str(job["config"]), "--format", formats),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("report: ")]
    path = Path(line.removeprefix("report: "))
    assert path.name == shown and path.is_file()
    assert path.parent.parent == job["reports"]
