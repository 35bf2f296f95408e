"""A stop signal that a library turns into an error of its own ends the command as
interrupted (tester A1, seen once in about 240 stopped reports: SIGTERM while a chart was drawn
gave matplotlib's "ValueError: Invalid affine transformation matrix", a traceback and exit 1,
which a scheduler reads as "findings").

The real `asg-audit report` in a subprocess; one chart drawer is replaced by one that gets a
real SIGTERM and turns the interrupt into a ValueError, as that library code did. An error
with no stop before it keeps its traceback and exit code.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _hardening_procs import clean_env
from _report_store import report_store, settled

_SCRIPT = """
import signal, sys, time
from asg_audit.report import charts

HOW = sys.argv[1]

def draw(frames):
    if HOW == "stop":
        try:
            signal.raise_signal(signal.SIGTERM)
            time.sleep(0.01)  # the handler runs here at the latest
        except KeyboardInterrupt:
            raise ValueError("Invalid affine transformation matrix") from None
    raise ValueError("a chart that cannot be drawn")

charts._DRAWERS["spend"] = draw
from asg_audit.entry import main
sys.argv = ["asg-audit", *sys.argv[2:]]
main()
"""


@pytest.mark.parametrize("stopped", [True, False], ids=["stopped", "plain_error"])
def test_an_error_a_stop_turned_into_is_an_interruption(stopped: bool, tmp_path: Path) -> None:
    db = report_store(tmp_path, [settled("t1")])
    how = "stop" if stopped else "error"
    command = [sys.executable, "-c", _SCRIPT, how, "report", "--db", str(db), "--out", "r"]
    done = subprocess.run(
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=clean_env(drop_prefix="ASG_"),
        timeout=120,
    )
    if stopped:
        assert done.returncode == 3, done.stderr
        assert done.stderr.strip().splitlines()[-1] == "asg-audit: interrupted", done.stderr
        assert "Traceback" not in done.stderr
    else:  # no stop: the error is not hidden as one
        assert done.returncode == 1, done.stderr
        assert "ValueError: a chart that cannot be drawn" in done.stderr
        assert "interrupted" not in done.stderr
