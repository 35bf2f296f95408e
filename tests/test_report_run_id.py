"""`render(run_id=...)`: only a plain name may name a report folder.

`run_id="."` once made the run folder the reports folder itself: it was moved aside to a hidden
`.reports.old` and the next such call deleted every earlier report; `latest`/`LATEST` replaced
the pointers. Now such a run id is refused with a ConfigError naming `run_id`, before anything
on disk moves. Real stores, real report folders.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from asg_audit.audit import Audit, analyze
from asg_audit.errors import ConfigError
from asg_audit.ingest_files import ingest_paths
from asg_audit.report import render
from asg_audit.report.render import _publish

_LINE = (
    '{"task_id":"t1","status":"settled","consensus_label":"cat","confidence":1.0,'
    '"worker_count":3,"agreement_count":3,"bsv_txid":"' + "a" * 64 + '",'
    '"created_at":"2026-04-08T21:00:00Z","settled_at":"2026-04-08T21:00:47Z","cost_sats":975}\n'
)


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> Audit:
    folder = tmp_path_factory.mktemp("store")
    export = folder / "one.ndjson"
    export.write_text(_LINE)
    db = folder / "one.duckdb"
    ingest_paths(db, [export], progress=False)
    return analyze(db)


def _tree(root: Path) -> dict[str, str]:
    """Every entry under the folder holding `root`, with what it is (a link: its target)."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root.parent):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root.parent))
            out[rel] = f"-> {os.readlink(p)}" if p.is_symlink() else ("dir" if p.is_dir() else "")
    return out


@pytest.mark.parametrize(
    "run_id",
    [
        ".",
        "..",
        "latest",
        "LATEST",
        "Latest",
        "previous",
        "a/b",
        "../evil",
        "/abs",
        ".hidden",
        "",
        "x.tmp",
        "LATEST.tmp",
        "a\\b",
        "r 1",
        "x" * 201,
    ],
)
def test_unsafe_run_id_is_refused_before_anything_moves(
    audit: Audit, tmp_path: Path, run_id: str
) -> None:
    out = tmp_path / "keep" / "reports"
    render(audit, out_dir=out, run_id="r1", formats="json")
    render(audit, out_dir=out, run_id="r2", formats="json")
    before = _tree(out)
    for _ in range(2):  # a second call once deleted every earlier report
        with pytest.raises(ConfigError, match="run_id"):
            render(audit, out_dir=out, run_id=run_id, formats="json")
        assert _tree(out) == before
    assert (out / "r1" / "summary.json").is_file()
    assert (out / "r2" / "summary.json").is_file()
    assert os.readlink(out / "latest") == "r2"
    assert (out / "LATEST").read_text() == "r2\n"


def test_plain_run_ids_still_work_and_replace_their_own_run(audit: Audit, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    for run_id in ("20260101T000000Z-abc123", "nightly_2026.04.08", "r1", "r1"):
        report = render(audit, out_dir=out, run_id=run_id, formats="json")
        assert report.folder == out / run_id
        assert (out / run_id / "summary.json").is_file()
        assert os.readlink(out / "latest") == run_id
    assert sorted(p.name for p in out.iterdir()) == [
        "20260101T000000Z-abc123",
        "LATEST",
        "latest",
        "nightly_2026.04.08",
        "r1",
    ]


def test_publish_never_moves_the_reports_folder_itself(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    (root / "r1").mkdir(parents=True)
    (root / "r1" / "summary.json").write_text("{}")
    for target in (root / ".", root / "..", root / "latest", root.parent / "elsewhere"):
        staging = root / ".x.tmp"
        staging.mkdir()
        with pytest.raises(ConfigError, match="run_id"):
            _publish(staging, target)
        staging.rmdir()
        assert (root / "r1" / "summary.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports"]
