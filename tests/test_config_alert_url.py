"""`[audit] alert_url` is checked when the config is read, not when an alert is due.

It used to be checked only by the POST: a typo (`hooks.slack.com/...` without its scheme,
`htps://`) passed every run without findings and failed the one run that needed to page
someone (exit 3 "alert failed" at the end of a long job). The value itself is a secret (a
Slack or Teams webhook URL carries its token in its path) and never appears in the error.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from _audit_job import offline_job
from _hardening_procs import asg_audit, clean_env, query

from asg_audit.config import AuditConfig, load_config
from asg_audit.errors import ConfigError

SECRET_PATH = "T000/B000/XXXXsecretXXXX"
BAD = [f"hooks.slack.com/services/{SECRET_PATH}", f"htps://hooks.slack.com/{SECRET_PATH}", ""]


@pytest.mark.parametrize("url", BAD)
def test_a_file_with_an_unusable_alert_url_is_refused_naming_the_file(
    tmp_path: Path, url: str
) -> None:
    config = tmp_path / "asg_audit.toml"
    config.write_text(f'[audit]\nalert_url = "{url}"\n')
    with pytest.raises(ConfigError) as refused:
        load_config(config, env={})
    message = str(refused.value)
    assert message.startswith("[audit] alert_url is not an absolute http:// or https:// URL")
    assert f"set by alert_url in {config}" in message
    assert SECRET_PATH not in message and "slack" not in message


@pytest.mark.parametrize("url", BAD)
def test_audit_config_refuses_an_unusable_alert_url(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^\[audit\] alert_url is not an absolute"):
        AuditConfig(audit={"alert_url": url})
    with pytest.raises(ConfigError, match=r"given to AuditConfig"):
        AuditConfig().replace(audit={"alert_url": url})


def test_a_usable_alert_url_and_none_at_all_are_taken(tmp_path: Path) -> None:
    url = f"https://hooks.slack.com/services/{SECRET_PATH}"
    assert AuditConfig(audit={"alert_url": url}).audit["alert_url"] == url
    assert "alert_url" not in AuditConfig(audit={"alert_on": "warn"}).audit


def test_audit_with_an_unusable_alert_url_exits_2_before_any_step(tmp_path: Path) -> None:
    job = offline_job(tmp_path, 3)
    job["config"].write_text(job["config"].read_text() + f'alert_url = "{BAD[0]}"\n')
    done = subprocess.run(
        asg_audit("audit", "--config", str(job["config"])),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "[audit] alert_url is not an absolute" in done.stderr
    assert SECRET_PATH not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    # nothing ran: no audit run recorded, the drop folder not ingested
    assert query(job["db"], "SELECT count(*) FROM runs")[0][0] == 0
