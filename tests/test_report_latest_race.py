"""Two writers pointing `latest`/`LATEST` of one reports folder at once (two jobs, or two stores,
reporting into one folder) never fail: each writes through its own temporary name. With the
shared `LATEST.tmp` one writer could rename the other's file away, and its report failed with
exit 2 although the run folder was complete.

Two real processes, started together: each points the folder at its own run for 2 s.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from _hardening_procs import REPO

WRITER = """
import sys, time
from pathlib import Path
from asg_audit.report.render import _point_latest

root, run = Path(sys.argv[1]), sys.argv[2]
errors = []
while not (root / "go").exists():  # both start together
    time.sleep(0.001)
end = time.monotonic() + 2.0
while time.monotonic() < end:
    try:
        _point_latest(root, run)
    except OSError as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
print(len(errors), errors[:1])
"""


def test_two_processes_pointing_latest_at_once_never_fail(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    for run in ("20260101T000000Z-aaaaaa", "20260101T000000Z-bbbbbb"):
        (root / run).mkdir(parents=True)
        (root / run / "summary.json").write_text("{}\n")
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(root), run],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for run in ("20260101T000000Z-aaaaaa", "20260101T000000Z-bbbbbb")
    ]
    (root / "go").write_text("")
    outputs = [w.communicate(timeout=120) for w in writers]
    (root / "go").unlink()
    for writer, (out, err) in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, err
        assert out.startswith("0 []"), out
    assert (root / "LATEST").read_text() in (
        "20260101T000000Z-aaaaaa\n",
        "20260101T000000Z-bbbbbb\n",
    )
    assert (root / "latest").resolve().parent == root.resolve()
    # nothing temporary is left behind
    assert sorted(p.name for p in root.iterdir()) == [
        "20260101T000000Z-aaaaaa",
        "20260101T000000Z-bbbbbb",
        "LATEST",
        "latest",
    ]
