"""A second Ctrl-C while `serve-webhooks` stops (an impatient operator) ends it as the first
does: exit 0, the "stopped" line, nothing on stderr. It used to print Starlette's traceback of
the lifespan task Uvicorn cancelled (7 of 7 tries, tester S)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(sys.executable).parent / "asg-audit"


def test_a_second_ctrl_c_while_stopping_prints_no_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "ASG_WEBHOOK_SECRET": "a-test-secret-of-ours"}
    proc = subprocess.Popen(
        [str(SCRIPT), "serve-webhooks", "--db", str(tmp_path / "s.duckdb"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "listening on http://127.0.0.1:" in proc.stdout.readline()
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert err == "", err
    assert "webhooks: stopped by SIGINT; deliveries answered: none" in out
