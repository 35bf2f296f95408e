"""`asg-audit simulate`: prints the five documented lines, answers, stops cleanly."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import httpx


def test_simulate_prints_five_lines_and_answers(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asg_audit",
            "simulate",
            "--seed",
            "7",
            "--tasks",
            "200",
            "--time-scale",
            "0.05",
            "--faults",
            "none",
            "--port",
            "0",
            "--out",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [proc.stdout.readline().rstrip("\n") for _ in range(5)]
        keys = [line.split(": ", 1)[0] for line in lines]
        assert keys == ["gateway", "chain", "api key", "webhook secret", "submissions"]
        values = dict(line.split(": ", 1) for line in lines)
        assert values["api key"].startswith("sk_sandbox_")
        assert values["webhook secret"].startswith("whsec_")
        with open(values["submissions"]) as fh:
            first = json.loads(fh.readline())
        assert (tmp_path / "ground_truth.json").exists()
        r = httpx.get(
            f"{values['gateway']}/v1/tasks/{first['task_id']}/result",
            headers={"Authorization": f"Bearer {values['api key']}"},
        )
        assert r.status_code in (200, 202, 404) and r.headers["content-type"].startswith(
            "application/json"
        )
        assert httpx.get(values["chain"] + "/chain/info").status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 15
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    assert proc.returncode == 0


def test_simulate_out_that_cannot_be_a_folder_is_one_line_exit_2(tmp_path):
    a_file = tmp_path / "submissions.ndjson"
    a_file.write_text("{}\n")
    for out in (a_file, tmp_path / "submissions.ndjson" / "below", "/proc/nope"):
        done = subprocess.run(
            [sys.executable, "-m", "asg_audit", "simulate", "--tasks", "50", "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"asg-audit: error: --out {out}: ")
        assert "cannot write the simulator's files there" in lines[0]


def test_simulate_out_with_terminal_controls_is_printed_escaped(tmp_path):
    # tester T5: an --out holding ESC and U+202E reached the terminal raw
    out = tmp_path / "simx\x1b[31m\u202e"
    args = ["simulate", "--tasks", "50", "--port", "0", "--faults", "none", "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "asg_audit", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [proc.stdout.readline().rstrip("\n") for _ in range(5)]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
    assert lines[4] == f"submissions: {tmp_path}/simx\\x1b[31m\\u202e/submissions.ndjson"
    assert (out / "submissions.ndjson").exists()
    # a folder that cannot be made: the error names it escaped too
    blocked = tmp_path / "file\x1b[2J"
    blocked.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "asg_audit", "simulate", "--tasks", "50", "--out", str(blocked)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "\x1b" not in done.stderr and "file\\x1b[2J" in done.stderr
