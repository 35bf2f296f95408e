"""A secret pasted in the wrong place of the config is never echoed by the error about it.

The WoC key pasted as `chain_url`, the webhook secret as `base_url` (in the file or in
`ASG_BASE_URL`), either as a key name or a check id: the error names the setting and where it
is set, exit 2, and the value is not shown. URL errors used to quote the value and masked only
`sk_live_...`-shaped ones.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from _hardening_procs import REPO, asg_audit, clean_env

WOC_KEY = "woc_SECRETWOC456"
HOOK_SECRET = "whsec_SECRETHOOK789"
API_KEY = "apikey_SECRETAPI123"  # not sk_live_-shaped: only its being configured hides it
SECRETS = {"WOC_API_KEY": WOC_KEY, "ASG_WEBHOOK_SECRET": f"whsec_other,{HOOK_SECRET}"}


def _report(tmp_path: Path, toml: str, **env: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "sk.toml"
    cfg.write_text(toml)
    args = ["--db", str(tmp_path / "a.duckdb"), "--config", str(cfg), "--out", str(tmp_path / "r")]
    return subprocess.run(
        asg_audit("report", *args),
        cwd=tmp_path,
        env=clean_env(PYTHONPATH=str(REPO), ASG_API_KEY=API_KEY, **SECRETS, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _assert_refused_unshown(proc: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("asg-audit: error: "), proc.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    for secret in ("SECRETWOC456", "SECRETHOOK789", "SECRETAPI123"):
        assert secret not in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("chain_url", WOC_KEY),
        ("base_url", HOOK_SECRET),
        ("base_url", API_KEY),
        ("chain_url", f" {WOC_KEY}\t"),
        ("base_url", f"ftp://{HOOK_SECRET}/v1"),  # a secret inside a URL-shaped value
        ("chain_url", f"https://host:{WOC_KEY}/"),  # ... as its port
    ],
)
def test_url_setting_holding_a_secret_in_the_file_is_refused_unshown(
    tmp_path: Path, key: str, value: str
) -> None:
    proc = _report(tmp_path, f"{key} = {value!r}\n".replace("'", '"'))
    _assert_refused_unshown(
        proc, f"{key} is not an absolute http:// or https:// URL", f"set by {key} in ", "sk.toml"
    )
    assert not (tmp_path / "r").exists()


def test_url_setting_holding_a_secret_in_the_environment_is_refused_unshown(
    tmp_path: Path,
) -> None:
    proc = _report(tmp_path, "", ASG_BASE_URL=WOC_KEY, ASG_CHAIN_URL=HOOK_SECRET)
    _assert_refused_unshown(
        proc, "base_url is not an absolute", "set by ASG_BASE_URL in the environment"
    )


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (f'{WOC_KEY} = "x"\n', "unknown key(s): <a name holding a secret, not shown>"),
        (f"[audit]\n{HOOK_SECRET} = 1\n", "unknown key(s) in [audit]: <a name holding"),
        (f'[checks."{API_KEY}"]\nwarn = 1\n', "unknown check id"),
        (f'[checks."{WOC_KEY}"]\n{HOOK_SECRET} = 1\n', "unknown check id"),
    ],
)
def test_secret_pasted_as_a_key_name_or_check_id_is_not_echoed(
    tmp_path: Path, toml: str, expected: str
) -> None:
    _assert_refused_unshown(_report(tmp_path, toml), expected)


def test_an_ordinary_unknown_key_is_still_named(tmp_path: Path) -> None:
    proc = _report(tmp_path, "chain_ulr = 'https://x'\n")
    _assert_refused_unshown(proc, "sk.toml: unknown key(s): chain_ulr (known: ")
