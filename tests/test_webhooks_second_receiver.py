"""A second `serve-webhooks` on a store another receiver holds: "database busy", exit 3 (tester X).

It started, said it was listening, answered 503 to everything and logged "webhook store
unavailable: ... database busy" every second for ever. Real receivers in subprocesses.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

from _hardening_procs import clean_env
from _webhooks_server import SECRET


def _receiver(db: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "asg_audit", "serve-webhooks", "--port", "0", "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )


def _stop(receiver: subprocess.Popen[str]) -> None:
    """Stop a receiver as a service is stopped (SIGTERM), killing it if it does not end."""
    receiver.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        receiver.communicate(timeout=60)
    if receiver.poll() is None:
        receiver.kill()
        receiver.communicate()


def test_a_second_receiver_on_a_held_store_is_database_busy_and_never_listens(
    tmp_path: Path,
) -> None:
    db = tmp_path / "w.duckdb"
    env = clean_env(ASG_WEBHOOK_SECRET=SECRET)
    first = _receiver(db, env)
    try:
        assert first.stdout is not None
        assert first.stdout.readline().startswith("webhooks: listening on http://127.0.0.1:")
        second = _receiver(db, env)
        try:
            out, err = second.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            second.kill()
            out, err = second.communicate()
            raise AssertionError(
                f"the second receiver kept running:\n{out}\n{err[-2000:]}"
            ) from None
        assert second.returncode == 3, (out, err)
        assert out == ""  # it never said it listens
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith("asg-audit: error: ")
        assert "database busy" in lines[0]
        # the first one still serves, and stops as a service does
        time.sleep(0.5)
        assert first.poll() is None
    finally:
        _stop(first)
    assert first.returncode == 0


def test_the_library_receiver_on_a_held_store_raises_database_busy_and_never_listens(
    tmp_path: Path,
) -> None:
    """`serve_webhooks()` from Python checks the store as the command does (it used to listen
    and answer 503 for ever): a StoreError before it binds."""
    db = tmp_path / "w.duckdb"
    first = _receiver(db, clean_env(ASG_WEBHOOK_SECRET=SECRET))
    script = (
        "import sys\n"
        "from asg_audit.errors import StoreError\n"
        "from asg_audit.webhooks import serve_webhooks\n"
        "try:\n"
        f"    serve_webhooks({str(db)!r}, {SECRET!r}, port=0)\n"
        "except StoreError as exc:\n"
        "    print('refused:', exc)\n"
        "    sys.exit(7)\n"
    )
    try:
        assert first.stdout is not None
        assert first.stdout.readline().startswith("webhooks: listening on http://127.0.0.1:")
        second = subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=clean_env(),
            text=True,
        )
        try:
            out, err = second.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            second.kill()
            out, err = second.communicate()
            raise AssertionError(f"serve_webhooks kept running:\n{out}\n{err[-2000:]}") from None
        assert second.returncode == 7, (out, err)
        assert out.startswith("refused: ") and "database busy" in out
        assert "listening" not in out + err
        assert SECRET not in out + err
    finally:
        _stop(first)
