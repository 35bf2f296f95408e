"""A `--secret-file` that is not UTF-8 text is one error line, exit 2, and never shows the secret.

`asg-audit serve-webhooks` and `webhooks register` run as subprocesses; both read the file the
same way. A UTF-8 byte-order mark (Notepad) is an encoding marker, not part of the secret.
"""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
from _webhooks_server import REPO, free_port, payload, receiver_process, signed

from asg_audit.webhooks import WEBHOOK_PATH

SECRET_TEXT = "whsec_NEVERSHOWNFILESECRET"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ASG_WEBHOOK_SECRET",)}
    env.update({"ASG_API_KEY": "sk_test_abc", "ASG_BASE_URL": "http://127.0.0.1:9"})
    return subprocess.run(
        [sys.executable, "-m", "asg_audit", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "content",
    [
        b"\xff" + SECRET_TEXT.encode() + b"\n",  # a stray byte before the secret
        SECRET_TEXT.encode() + b"\n\xc3\x28\n",  # a broken sequence after it
        "\ufeff".encode("utf-16-le").join([b"", SECRET_TEXT.encode("utf-16-le")]),  # UTF-16
    ],
    ids=["leading-0xff", "bad-sequence", "utf-16"],
)
@pytest.mark.parametrize("command", ["serve-webhooks", "register"])
def test_secret_file_not_utf8_is_one_error_line_exit_2(tmp_path, db, content, command):
    secret_file = tmp_path / "secrets.bin"
    secret_file.write_bytes(content)
    if command == "serve-webhooks":
        args = ["serve-webhooks", "--db", str(db), "--port", "0"]
    else:
        args = ["webhooks", "register", "--url", "https://hooks.example.com/webhooks/asg"]
    proc = _cli(*args, "--secret-file", str(secret_file))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"asg-audit: error: {secret_file}: "), lines[0]
    assert "not UTF-8" in lines[0]
    assert "Traceback" not in proc.stderr
    for shown in (proc.stderr, proc.stdout):
        assert "NEVERSHOWN" not in shown
        assert "NEVERSHOWN" not in shown.replace("\x00", "")
    assert not db.exists()  # nothing was started


def test_secret_file_with_utf8_byte_order_mark_is_read_without_it(tmp_path, db, monkeypatch):
    monkeypatch.delenv("ASG_WEBHOOK_SECRET", raising=False)
    secret_file = tmp_path / "secrets.txt"
    secret_file.write_bytes(b"\xef\xbb\xbf" + SECRET_TEXT.encode() + b"\r\n")
    port = free_port()
    body, headers = signed(payload("tsk_bom_secret"), SECRET_TEXT)
    with receiver_process(db, port, secrets="", extra=("--secret-file", str(secret_file))):
        r = httpx.post(f"http://127.0.0.1:{port}{WEBHOOK_PATH}", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["outcome"] == "stored"


def test_a_secret_in_the_file_with_a_control_character_is_refused_unshown(tmp_path) -> None:
    from asg_audit.errors import ConfigError
    from asg_audit.webhooks import read_secret_file

    path = tmp_path / "secrets"
    path.write_bytes(b"whsec_first\r\nwhsec_SE\x07CRET, whsec_third\n")
    with pytest.raises(ConfigError, match=r": secret 2: the secret holds a control character") as e:
        read_secret_file(path)
    assert "SE" not in str(e.value) and "whsec" not in str(e.value)
    path.write_bytes(b"whsec_first\r\n  whsec_second\t, whsec_third \r\n")
    assert [s.reveal() for s in read_secret_file(path)] == [
        "whsec_first",
        "whsec_second",
        "whsec_third",
    ]
