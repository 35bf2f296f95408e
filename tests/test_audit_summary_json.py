"""`Audit.summary()` is JSON (no NaN) on an empty store: `agreement_rate` was NaN (0/0) while
every other absent figure was None, so `json.dumps(summary, allow_nan=False)` failed. Real
stores made by the real `ingest`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from _records import settled_line

from asg_audit.audit import analyze
from asg_audit.ingest_files import ingest_paths


@pytest.mark.parametrize("lines", [0, 1])
def test_summary_is_json_without_nan(tmp_path: Path, lines: int) -> None:
    export = tmp_path / "export.ndjson"
    export.write_text("".join(settled_line(f"t{i}") + "\n" for i in range(lines)))
    db = tmp_path / "s.duckdb"
    ingest_paths(db, [export], progress=False)
    summary = analyze(db).summary()
    text = json.dumps(summary, allow_nan=False)
    assert json.loads(text) == summary
    assert summary["tasks"] == lines
    if lines == 0:
        assert summary["agreement_rate"] is None
        assert summary["latency_p50_s"] is None
    else:
        assert summary["agreement_rate"] == 1.0
    for value in summary.values():
        assert not (isinstance(value, float) and not math.isfinite(value))
