"""`collect` whose store stops taking writes (a full disk) stops at once (tester X, HIGH).

The write that fails is a real one: the command runs in a subprocess whose files may not grow
past a size (RLIMIT_FSIZE, with SIGXFSZ ignored: the write fails with EFBIG, as a full disk
fails it with ENOSPC). The first writes fit, a later one does not. The run must stop polling,
say why on one line, exit 3, be recorded `failed` with the error, keep what it stored, and a
run after the limit is lifted must finish the rest.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from _hardening_procs import FSIZE_LIMITED, clean_env, query
from _scripted_gateway import Answer, scripted_gateway, settled_body, tracked_store

KEY = "sk_sandbox_fixd"
TASKS = 200
IDS = [f"tsk_d{i:04d}" for i in range(TASKS)]
# each answer carries this much random padding: a few batches of them outgrow the file limit
PAD_BYTES = 40_000
# the store may grow this far past its size before the run (the write-ahead log too)
LIMIT_MARGIN = 64 * 1024


def _fat_settled(task_id: str, n: int) -> Answer:
    body = json.loads(settled_body(task_id))
    body["note"] = random.randbytes(PAD_BYTES // 2).hex()
    return 200, json.dumps(body).encode(), {}


def _setup(tmp_path: Path) -> tuple[Path, Path]:
    db = tracked_store(tmp_path, IDS)
    config = tmp_path / "asg_audit.toml"
    # small batches written often: the limit is met a few writes into the run
    config.write_text(
        "[collector]\nbatch_size = 10\nflush_interval_s = 0.2\nflush_max_interval_s = 0.2\n"
        "max_rps = 40\nconcurrency = 4\nschedule = 'fixed'\n"
    )
    return db, config


def _collect(db: Path, config: Path, url: str, *, limit: int | None) -> tuple[int, str, float]:
    args = ["collect", "--db", str(db), "--config", str(config)]
    if limit is None:
        argv = [sys.executable, "-m", "asg_audit", *args]
    else:
        argv = [sys.executable, "-c", FSIZE_LIMITED, str(limit), *args]
    env = clean_env(ASG_API_KEY=KEY, ASG_BASE_URL=url)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        argv, env=env, cwd=db.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"collect did not end within 60 s:\n{err[-2000:]}") from None
    return proc.returncode, err, time.monotonic() - t0


def test_collect_stops_at_once_when_a_write_fails_and_a_later_run_finishes(
    tmp_path: Path,
) -> None:
    db, config = _setup(tmp_path)
    limit = os.path.getsize(db) + LIMIT_MARGIN
    with scripted_gateway(_fat_settled) as gateway:
        code, err, _ = _collect(db, config, gateway.url, limit=limit)
        asked_by_failed_run = len(gateway.log)

        errors = [line for line in err.splitlines() if line.startswith("asg-audit: error:")]
        assert code == 3, err[-2000:]
        assert len(errors) == 1, err[-2000:]
        assert "cannot write the database" in errors[0]
        assert "cannot be written (File too large)" in errors[0]  # the cause, as the OS says it
        assert "Traceback" not in err
        # it stopped polling: at 40 requests a second, far from all 200 tasks once a write of
        # 10 answers failed (the old run went on to poll every task, then waited for ever)
        assert asked_by_failed_run < TASKS // 2

        ((status, error),) = query(
            db,
            "SELECT status, json_extract_string(stats, '$.error') FROM runs "
            "WHERE command = 'collect'",
        )
        assert status == "failed"
        assert "File too large" in error
        stored = {
            r[0]
            for r in query(
                db,
                "SELECT task_id FROM observations WHERE source = 'poll' AND http_status = 200",
            )
        }
        done = {r[0] for r in query(db, "SELECT task_id FROM poll_state WHERE state = 'done'")}
        assert stored, "the writes before the failing one are kept"
        assert done == stored  # each task stored done has its answer, and no answer is lost

        code, err, _ = _collect(db, config, gateway.url, limit=None)
        assert code == 0, err[-2000:]
        again = {task_id for _, task_id, _ in gateway.log[asked_by_failed_run:]}
        assert not again & stored  # what was stored is not asked again
    states = dict(query(db, "SELECT task_id, state FROM poll_state"))
    assert states == dict.fromkeys(IDS, "done")
    runs = query(db, "SELECT status FROM runs WHERE command = 'collect' ORDER BY started_at")
    assert [r[0] for r in runs] == ["failed", "completed"]
