"""A small simulated world for the report tests, with hostile strings planted in the data.

The simulator's export is edited before ingest so that labels carry HTML, Markdown table syntax
and newlines: the report must show them as text, never as markup.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from asg_audit.audit import Audit, analyze
from asg_audit.config import AuditConfig, Secret
from asg_audit.ingest_files import ingest_paths, track_file
from asg_audit.sim import WorldConfig, generate_world

# Runs a script if it is ever parsed as HTML: sets the title and raises an alert.
HOSTILE_LABEL = "<img src=x onerror=\"document.title='PWNED';alert(1)\">"
MARKDOWN_LABEL = "a|b `code` <i>x</i>\nnext [link](javascript:alert(1))"
API_KEY = "sk-live-DO-NOT-PRINT-7f3a"
WEBHOOK_SECRET = "whsec-DO-NOT-PRINT-91bc"
TOKEN = "tok-DO-NOT-PRINT-55aa"
SECRETS = (API_KEY, WEBHOOK_SECRET, TOKEN)


def hostile_config() -> AuditConfig:
    """Return a config holding secrets in every place one can sit."""
    return AuditConfig(
        api_key=Secret(API_KEY),
        woc_api_key=Secret(API_KEY),
        webhook_secrets=(Secret(WEBHOOK_SECRET),),
        base_url="https://api.example.test",
        # base_url cannot hold credentials (refused); a webhook URL to post alerts to can
        audit={"alert_url": f"https://user:{TOKEN}@hooks.example.test/services/{TOKEN}"},
        # a token under a key a table does not take is refused (ConfigError), so it is not here
        collector={"concurrency": 8},
    )


def build_store(folder: Path, *, seed: int = 5, tasks: int = 800) -> tuple[Path, datetime]:
    """Return a store with a simulated world whose first two labels are hostile, and its now."""
    world = generate_world(WorldConfig(seed=seed, tasks=tasks, anomalies="all"))
    db = folder / "audit.duckdb"
    track_file(db, world.write_submissions(folder / "submissions.ndjson"))
    export = world.write_results_export(folder / "results.ndjson")
    lines = export.read_text(encoding="utf-8").splitlines()
    edited = 0
    for i, line in enumerate(lines):
        record = json.loads(line)
        if record.get("consensus_label") is None or "result" in record:
            continue
        record["consensus_label"] = HOSTILE_LABEL if edited == 0 else MARKDOWN_LABEL
        lines[i] = json.dumps(record)
        edited += 1
        if edited == 2:
            break
    assert edited == 2, "the export had no flat settled records to edit"
    export.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ingest_paths(db, [export])
    return db, datetime.fromtimestamp(world.now_at, UTC)


def build_audit(folder: Path) -> Audit:
    """Return the audit of a fresh hostile store (secrets in its config)."""
    db, now = build_store(folder)
    return analyze(db, as_of=now, config=hostile_config())
