"""`render` into a path that is a file says so, as `report --out FILE` does (tester, R3 defect 3).

`render(audit, 'afile')` with `afile` an existing regular file said `afile/latest: cannot point
latest at the report: cannot be read (Not a directory)`, while the command line says `afile:
cannot be the report folder: afile is a file`. The Python path now gives the CLI's words, also
for a folder under the file, and writes nothing.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from _hardening_procs import asg_audit, clean_env

from asg_audit.audit import analyze
from asg_audit.errors import ConfigError
from asg_audit.report import render
from asg_audit.store import open_store


@pytest.mark.parametrize("under", ["", "sub"])
def test_render_into_a_file_says_it_is_a_file(tmp_path: Path, under: str) -> None:
    db = tmp_path / "audit.duckdb"
    with open_store(db):
        pass
    afile = tmp_path / "afile"
    afile.write_text("mine\n", encoding="utf-8")
    out = afile / under if under else afile
    with pytest.raises(ConfigError) as caught:
        render(analyze(db), out)
    assert str(caught.value) == f"{out}: cannot be the report folder: {afile} is a file"
    assert afile.read_text(encoding="utf-8") == "mine\n"
    assert sorted(os.listdir(tmp_path)) == ["afile", "audit.duckdb"]


def test_cli_and_python_say_the_same(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    with open_store(db):
        pass
    (tmp_path / "afile").write_text("mine\n", encoding="utf-8")
    done = subprocess.run(
        asg_audit("report", "--db", str(db), "--out", "afile"),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env(),
        timeout=120,
    )
    assert done.returncode == 2
    with pytest.raises(ConfigError) as caught:
        cwd = Path.cwd()
        os.chdir(tmp_path)
        try:
            render(analyze(db), "afile")
        finally:
            os.chdir(cwd)
    assert str(caught.value) in done.stderr
    assert "afile: cannot be the report folder: afile is a file" in done.stderr
