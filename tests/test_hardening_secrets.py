"""Secrets: the full demo with a known chain key (and the simulator's API key and the demo's
webhook secret, whose shapes are known), then the database file, every file written, the
captured stdout/stderr and error messages are searched for them: zero hits."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from _hardening_procs import asg_audit, clean_env

from asg_audit.sim import WorldConfig, generate_world, run_simulator

WOC_KEY = "woc_known_chain_key_5f1e9a7c3b"
HOOK_SECRET = "whsec_known_receiver_secret_77aa"
# The demo's API key is the simulator's `sk_sandbox_<32 hex>`, its webhook secret
# `whsec_demo_<32 hex>` (the simulator's default `whsec_<32 hex>`): any such string is a leak.
PATTERNS = [
    re.compile(rb"sk_sandbox_[0-9a-f]{32}"),
    re.compile(rb"whsec_(demo_)?[0-9a-f]{32}"),
    re.compile(re.escape(WOC_KEY.encode())),
    re.compile(re.escape(HOOK_SECRET.encode())),
]


def _hits(data: bytes) -> list[bytes]:
    return [m.group(0) for p in PATTERNS for m in p.finditer(data)]


def test_hardening_demo_leaves_no_secret_in_store_files_or_output(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = subprocess.run(
        asg_audit("demo", "--tasks", "200", "--out", str(out)),
        env=clean_env(WOC_API_KEY=WOC_KEY, ASG_WEBHOOK_SECRET=HOOK_SECRET),
        cwd=tmp_path,
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.suffix == ".duckdb" for p in files) and any(p.name == "index.html" for p in files)
    leaks = {str(p): _hits(p.read_bytes()) for p in files}
    leaks["stdout"], leaks["stderr"] = _hits(done.stdout), _hits(done.stderr)
    assert {k: v for k, v in leaks.items() if v} == {}


def test_hardening_error_messages_name_no_secret(tmp_path: Path) -> None:
    world = generate_world(WorldConfig(seed=61, tasks=20, live_fraction=0.0, anomalies="none"))
    subs = world.write_submissions(tmp_path / "subs.ndjson")
    db = tmp_path / "audit.duckdb"
    wrong_key = "sk_live_wrong_known_key_0123456789"
    with run_simulator(world) as sim:
        runs = [
            ("track", str(subs)),
            ("collect",),  # the Gateway refuses the key
            ("verify-chain",),  # the WoC key configured (nothing to verify yet: exit 0)
            ("webhooks", "register", "--url", "http://127.0.0.1:9/hook"),
        ]
        env = clean_env(
            ASG_API_KEY=wrong_key,
            ASG_BASE_URL=sim.gateway_url,
            WOC_API_KEY=WOC_KEY,
            ASG_WEBHOOK_SECRET=HOOK_SECRET,
            ASG_CHAIN_URL="http://127.0.0.1:9/v1/bsv/main",
        )
        outputs = [
            subprocess.run(
                asg_audit(*argv, "--db", str(db)) if argv[0] != "webhooks" else asg_audit(*argv),
                env=env,
                cwd=tmp_path,
                capture_output=True,
                timeout=120,
            )
            for argv in runs
        ]
    codes = [p.returncode for p in outputs]
    assert codes[0] == 0 and codes[1] == 3 and codes[3] in (2, 3), [p.stderr for p in outputs]
    text = b"".join(p.stdout + p.stderr for p in outputs)
    assert b"asg-audit: error:" in text
    for secret in (wrong_key, WOC_KEY, HOOK_SECRET):
        assert secret.encode() not in text
    assert not _hits(db.read_bytes())
