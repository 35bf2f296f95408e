"""Files given by name are read with a bound: a device or a huge file is one error line, exit 2.

`--config` reads at most 1 MiB, `--secret-file` at most 64 KiB (`config.read_limited`).
`/dev/zero` given by mistake used to be read until memory ran out (a MemoryError traceback, or
24 GB of RSS before the kernel killed the process). Every subprocess here runs under an address
space limit, so that a regression fails the test instead of eating the machine's memory.
"""

from __future__ import annotations

import os
import resource
import subprocess
import threading
from pathlib import Path

import pytest
from _hardening_procs import REPO, asg_audit, clean_env

from asg_audit.config import (
    CONFIG_FILE_MAX_BYTES,
    SECRET_FILE_MAX_BYTES,
    load_config,
    read_limited,
    read_secret_file,
)
from asg_audit.errors import ConfigError, InputError

_AS_LIMIT = 3 << 30  # bytes of address space a child may map: far below what /dev/zero takes


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_AS_LIMIT, _AS_LIMIT))


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        asg_audit(*args),
        cwd=REPO,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_memory,
    )


def _one_error_line(proc: subprocess.CompletedProcess[str], name: str, what: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"asg-audit: error: {name}: {what}"], proc.stderr[-2000:]


def test_cli_config_from_dev_zero_is_one_error_line_exit_2(tmp_path: Path) -> None:
    proc = _run("runs", "--config", "/dev/zero", "--db", str(tmp_path / "a.duckdb"))
    _one_error_line(
        proc, "/dev/zero", "config file is larger than 1 MiB (is it the right file?): not read"
    )


def test_cli_secret_file_from_dev_zero_is_one_error_line_exit_2(tmp_path: Path) -> None:
    db = tmp_path / "a.duckdb"
    proc = _run("serve-webhooks", "--db", str(db), "--port", "0", "--secret-file", "/dev/zero")
    _one_error_line(
        proc,
        "/dev/zero",
        "the webhook secret file is larger than 64 KiB (is it the right file?): not read",
    )
    assert not db.exists()  # nothing was started


def test_cli_secret_file_huge_sparse_file_is_refused_before_the_gateway(tmp_path: Path) -> None:
    big = tmp_path / "big.secret"
    with big.open("wb") as fh:
        fh.truncate(8 << 30)  # 8 GiB of holes: no disk used, more than the child may map
    proc = _run(
        "webhooks",
        "register",
        "--url",
        "https://hooks.example.com/webhooks/asg",
        "--secret-file",
        str(big),
        ASG_API_KEY="sk_test_abc",
        ASG_BASE_URL="http://127.0.0.1:9",
    )
    _one_error_line(
        proc,
        str(big),
        "the webhook secret file is larger than 64 KiB (is it the right file?): not read",
    )


def test_cli_config_not_utf8_is_one_error_line_exit_2(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(b'db = "caf\xe9.duckdb"\n')
    proc = _run("runs", "--config", str(cfg), "--db", str(tmp_path / "a.duckdb"))
    _one_error_line(proc, str(cfg), "not UTF-8 text (byte 9): save it as UTF-8")


def test_read_limited_takes_a_file_of_exactly_the_limit_and_refuses_one_byte_more(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ids.txt"
    path.write_bytes(b"x" * 100)
    assert read_limited(path, limit=100, what="task id file") == b"x" * 100
    with pytest.raises(InputError, match=r"ids\.txt: task id file is larger than 99 bytes"):
        read_limited(path, limit=99, what="task id file", error=InputError)
    with pytest.raises(ConfigError, match=r"missing: task id file not found$"):
        read_limited(tmp_path / "missing", limit=100, what="task id file")
    with pytest.raises(ConfigError, match=r": cannot read task id file: Is a directory$"):
        read_limited(tmp_path, limit=100, what="task id file")


def test_config_and_secret_files_up_to_their_limits_are_read(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    body = b"slo_seconds = 30\n"
    cfg.write_bytes(body + b"#" * (CONFIG_FILE_MAX_BYTES - len(body)))
    assert load_config(cfg, env={}).slo_seconds == 30
    cfg.write_bytes(cfg.read_bytes() + b"#")
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        load_config(cfg, env={})
    secret = tmp_path / "s.txt"
    head = b"whsec_one\n"
    secret.write_bytes(head + b"#" * (SECRET_FILE_MAX_BYTES - len(head)))
    assert [s.reveal() for s in read_secret_file(secret)] == ["whsec_one"]
    secret.write_bytes(secret.read_bytes() + b"#")
    with pytest.raises(ConfigError, match="larger than 64 KiB") as err:
        read_secret_file(secret)
    assert "whsec" not in str(err.value)


def test_secret_file_from_a_pipe_is_still_read(tmp_path: Path) -> None:
    # `--secret-file <(pass show hook)`: process substitution hands over a pipe, not a file
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with os.fdopen(write_fd, "wb") as fh:
            fh.write(b"whsec_from_pipe\n")

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        secrets = read_secret_file(f"/dev/fd/{read_fd}")
    finally:
        writer.join()
        os.close(read_fd)
    assert [s.reveal() for s in secrets] == ["whsec_from_pipe"]
