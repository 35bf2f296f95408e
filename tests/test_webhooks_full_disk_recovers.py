"""`serve-webhooks` on a store whose disk fills and then has room again stores each delivery
once (tester T8: after 7 failed writes every delivery still waiting to be normalised was
stored 8 times: each reopen of the store queued the bodies "left by a crash" that this
process's normaliser still held).

A real receiver in a subprocess whose files may not grow past a size (RLIMIT_FSIZE, SIGXFSZ
ignored: writes fail with EFBIG as a full disk fails them with ENOSPC); once deliveries are
refused (503), the limit is lifted from outside (`prlimit`), as space is freed on a disk.
"""

from __future__ import annotations

import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
from _webhooks_server import REPO, SECRET, free_port, payload, signed, wait_healthy

from asg_audit.store import open_store
from asg_audit.webhooks import WEBHOOK_PATH

# the receiver with its files limited to a size it may grow past later (the soft limit only)
_LIMITED = (
    "import resource, runpy, signal, sys\n"
    "limit = int(sys.argv.pop(1))\n"
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))\n"
    "runpy.run_module('asg_audit', run_name='__main__')\n"
)
DELIVERIES = 300


def test_a_disk_that_fills_then_frees_stores_each_delivery_once(tmp_path: Path) -> None:
    db = tmp_path / "hooks.duckdb"
    with open_store(db):
        pass  # the store exists: the limit is counted from its size
    # per file: the write-ahead log, new, fills up as the store itself would
    limit = db.stat().st_size + 16 * 1024
    port = free_port()
    args = ["serve-webhooks", "--db", str(db), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, "-c", _LIMITED, str(limit), *args],
        env={**os.environ, "ASG_WEBHOOK_SECRET": SECRET},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    refused = 0
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
        with httpx.Client(timeout=10) as client:
            for i in range(DELIVERIES):
                # padded: the write-ahead log outgrows the limit after some dozens
                body = {**payload(f"tsk_full_{i:04d}"), "note": random.randbytes(5_000).hex()}
                raw, headers = signed(body, SECRET)
                deadline = time.monotonic() + 60
                while (status := client.post(url, content=raw, headers=headers).status_code) != 200:
                    assert status == 503 and time.monotonic() < deadline, status
                    refused += 1
                    if refused == 5:  # room again on the disk
                        resource.prlimit(
                            proc.pid,
                            resource.RLIMIT_FSIZE,
                            (resource.RLIM_INFINITY, resource.RLIM_INFINITY),
                        )
                    time.sleep(0.2)
        time.sleep(3)  # the normaliser's retries
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    assert refused >= 5, "the limit was never met: nothing was tested"
    # the stop line lists what deliveries had: 503s and stores, no `0 dropped_records`
    stop = [line for line in out.decode().splitlines() if line.startswith("webhooks: stopped")]
    assert stop == [f"webhooks: stopped by SIGTERM; deliveries answered: {DELIVERIES} stored,"
                    f" {refused} unavailable"], out  # fmt: skip
    assert b"Traceback" not in err, err.decode(errors="replace")[-2000:]
    con = duckdb.connect(str(db), read_only=True)
    try:
        copies = con.execute(
            "SELECT n, count(*) FROM (SELECT task_id, count(*) AS n FROM observations"
            " GROUP BY task_id) GROUP BY n"
        ).fetchall()
        stored = con.execute(
            "SELECT count(*) FROM webhook_deliveries WHERE outcome = 'stored'"
        ).fetchall()
        results = con.execute("SELECT count(*) FROM results").fetchall()
    finally:
        con.close()
    assert copies == [(1, DELIVERIES)]
    assert stored == results == [(DELIVERIES,)]
