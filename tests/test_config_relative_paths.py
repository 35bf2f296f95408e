"""Relative paths in a config file are taken from the file's folder, not the current one.

A scheduled job (cron, systemd) runs from whatever folder: `cd elsewhere && asg-audit audit
--config /srv/asg_audit.toml` with `db = "store.duckdb"` and `drop_folders = ["drop"]` silently
made a new empty store and `reports/` in the current folder and warned `drop: drop folder does
not exist` without saying where it looked. Now `db`, `[audit] drop_folders`, `[audit]
report_dir` and `[webhooks] secret_file` written relative in the file are relative to the
file's folder (shown resolved), while `--db`, `--out`, `--secret-file` and `ASG_AUDIT_DB` stay
relative to the current folder. An empty path in the file is refused. Also: a config file
saved with a UTF-8 byte-order mark is read, and `--config ''` is a usage error naming --config.
Real files, the real command line in a real subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from _hardening_procs import asg_audit, clean_env, query
from _records import settled_line

from asg_audit.config import load_config, read_secret_file
from asg_audit.errors import ConfigError

JOB = "[audit]\nverify_chain = false\nbilling = false\n"


def _layout(tmp_path: Path, text: str) -> tuple[Path, Path, Path]:
    """Return (config file, its folder, another folder to run from)."""
    folder = tmp_path / "srv"
    folder.mkdir()
    config = folder / "asg_audit.toml"
    config.write_text(text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    return config, Path(os.path.realpath(folder)), elsewhere


def _audit(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        asg_audit("audit", *args),
        capture_output=True,
        text=True,
        env=clean_env(ASG_BASE_URL="http://127.0.0.1:9", **env),
        cwd=cwd,
        timeout=180,
    )


@pytest.mark.parametrize("named", ["absolute", "relative"])
def test_audit_from_another_folder_uses_the_config_folder(tmp_path: Path, named: str) -> None:
    config, folder, elsewhere = _layout(
        tmp_path,
        'db = "store.duckdb"\n'
        + JOB
        + 'drop_folders = ["drop", "nodrop"]\nreport_dir = "./reports"\n',
    )
    (folder / "drop").mkdir()
    (folder / "drop" / "export.ndjson").write_text(settled_line("t_x1") + "\n")
    name = str(config) if named == "absolute" else os.path.relpath(config, elsewhere)
    done = _audit(elsewhere, "--config", name, "--json")
    # 2: the listed drop folder `nodrop` does not exist (unreadable input)
    assert done.returncode == 2, done.stderr
    # the store, its lock, the reports: beside the config, nothing in the current folder
    assert list(elsewhere.iterdir()) == []
    assert query(folder / "store.duckdb", "SELECT task_id FROM results") == [("t_x1",)]
    outcome = json.loads(done.stdout)
    assert Path(outcome["report"]).parent == folder / "reports"
    assert (folder / "reports" / "latest" / "summary.json").is_file()
    # the warning says where it looked
    assert f"warning: unreadable input: {folder / 'nodrop'}: drop folder does not exist" in (
        done.stderr
    )


def test_flags_and_environment_stay_relative_to_the_current_folder(
    tmp_path: Path,
) -> None:
    config, folder, elsewhere = _layout(
        tmp_path, 'db = "store.duckdb"\n' + JOB + 'report_dir = "reports"\n'
    )
    done = _audit(elsewhere, "--config", str(config), "--db", "x.duckdb", "--out", "out")
    assert done.returncode in (0, 1), done.stderr
    assert (elsewhere / "x.duckdb").is_file() and (elsewhere / "out" / "latest").exists()
    assert not (folder / "store.duckdb").exists() and not (folder / "reports").exists()
    done = _audit(elsewhere, "--config", str(config), ASG_AUDIT_DB="env.duckdb")
    assert done.returncode in (0, 1), done.stderr
    assert (elsewhere / "env.duckdb").is_file() and not (folder / "store.duckdb").exists()
    assert (folder / "reports" / "latest").exists()  # report_dir still from the file


def test_secret_file_of_the_config_is_found_from_another_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, folder, elsewhere = _layout(tmp_path, '[webhooks]\nsecret_file = "hooks.secret"\n')
    (folder / "hooks.secret").write_text("whsec_fromfile\n")
    monkeypatch.chdir(elsewhere)
    loaded = load_config(config, env={})
    assert loaded.webhooks["secret_file"] == str(folder / "hooks.secret")
    assert [s.reveal() for s in read_secret_file(loaded.webhooks["secret_file"])] == [
        "whsec_fromfile"
    ]
    # the command line: a missing secret file is named by where it was looked for, before
    # anything listens
    (folder / "hooks.secret").unlink()
    done = subprocess.run(
        asg_audit("serve-webhooks", "--config", str(config), "--port", "0"),
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=elsewhere,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert f"{folder / 'hooks.secret'}: the webhook secret file not found" in done.stderr


def test_absolute_paths_are_kept_and_the_default_file_is_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, folder, elsewhere = _layout(
        tmp_path, f'db = "{tmp_path}/abs.duckdb"\n[audit]\ndrop_folders = ["/srv/in", "in"]\n'
    )
    monkeypatch.chdir(elsewhere)
    loaded = load_config(config, env={})
    assert loaded.db_path == tmp_path / "abs.duckdb"
    assert loaded.audit["drop_folders"] == ["/srv/in", str(folder / "in")]
    # ./asg_audit.toml: its folder is the current one
    (elsewhere / "asg_audit.toml").write_text('db = "here.duckdb"\n')
    assert load_config(None, env={}).db_path == Path(os.path.realpath(elsewhere)) / "here.duckdb"
    # a symbolic link to the file: the link's folder
    (elsewhere / "link.toml").symlink_to(config)
    linked = load_config("link.toml", env={}).audit["drop_folders"]
    assert linked == ["/srv/in", os.path.join(os.path.realpath(elsewhere), "in")]


@pytest.mark.parametrize(
    "text, name",
    [
        ('db = ""\n', "db"),
        ('[audit]\nreport_dir = ""\n', "[audit] report_dir"),
        ('[audit]\ndrop_folders = ["in", ""]\n', "[audit] drop_folders[1]"),
        ('[webhooks]\nsecret_file = ""\n', "[webhooks] secret_file"),
    ],
)
def test_an_empty_path_in_the_file_is_refused(tmp_path: Path, text: str, name: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(config, env={})
    assert str(caught.value) == (
        f"{config}: {name}: expected a path, got an empty string (leave the key out for its"
        " default)"
    )


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    config = tmp_path / "bom.toml"
    config.write_bytes(b"\xef\xbb\xbfslo_seconds = 90\r\n[costs]\r\nreward_sats = 7\r\n")
    loaded = load_config(config, env={})
    assert loaded.slo_seconds == 90 and loaded.costs.reward_sats == 7
    # a bad byte is still named by its offset in the file (the mark counted)
    config.write_bytes(b"\xef\xbb\xbfdb = '\xff'\n")
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 9\)"):
        load_config(config, env={})


def test_an_empty_config_path_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--config: the config file path is empty"):
        load_config("", env={})
    done = subprocess.run(
        asg_audit("db", "info", "--config", ""),
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "asg-audit: error: --config: the config file path is empty; name a file, or leave"
        " --config out to read ./asg_audit.toml when present\n"
    )
