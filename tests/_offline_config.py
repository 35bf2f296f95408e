"""The offline audit job of `_audit_job` as an `AuditConfig`, for `run_audit` from Python.

`offline_config(tmp_path, tasks)` gives the config (the job's store, drop folder and reports
folder; no chain step, no API key) and the job's paths (`offline_job`'s).
"""

from __future__ import annotations

from pathlib import Path

from _audit_job import offline_job

from asg_audit.config import AuditConfig

# the steps of an audit, in their order
STEPS = ("ingest", "collect", "verify-chain", "billing")


def offline_config(tmp_path: Path, tasks: int) -> tuple[AuditConfig, dict[str, Path]]:
    job = offline_job(tmp_path, tasks=tasks)
    config = AuditConfig(
        db_path=job["db"],
        audit={
            "drop_folders": [str(job["drop"])],
            "report_dir": str(job["reports"]),
            "verify_chain": False,
        },
    )
    return config, job
