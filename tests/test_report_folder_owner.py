"""A report never replaces what is not its own in the reports folder (`--out` may be any folder).

A folder of the user's named `latest` (notes inside) was deleted and replaced by a copy of the
run, after which every report copied instead of linking; a file named `latest` (or `LATEST`) was
overwritten; `render(run_id="data")` replaced a folder `data` of the user's, files and all. Now
each is refused before anything is written (ConfigError; exit 2 from the command line) and kept
as it was. What is ours is still replaced: `latest` as our symlink or as a copy we made (then a
symlink again), `LATEST` holding a run id, an earlier report of the same run id.

Real stores, real report folders, the real command in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from _hardening_procs import asg_audit, clean_env

from asg_audit.audit import Audit, analyze
from asg_audit.errors import ConfigError
from asg_audit.ingest_files import ingest_paths
from asg_audit.report import render
from asg_audit.report.folder import COPY_MARKER, _point_latest

_LINE = (
    '{"task_id":"t1","status":"settled","consensus_label":"cat","confidence":1.0,'
    '"worker_count":3,"agreement_count":3,"bsv_txid":"' + "a" * 64 + '",'
    '"created_at":"2026-04-08T21:00:00Z","settled_at":"2026-04-08T21:00:47Z","cost_sats":975}\n'
)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("store")
    export = folder / "one.ndjson"
    export.write_text(_LINE)
    store = folder / "one.duckdb"
    ingest_paths(store, [export], progress=False)
    return store


@pytest.fixture(scope="module")
def audit(db: Path) -> Audit:
    return analyze(db)


def _tree(root: Path) -> dict[str, str]:
    """Every entry under `root` (hidden ones too) with its content or link target."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = f"-> {os.readlink(p)}"
            else:
                out[rel] = "dir" if p.is_dir() else p.read_text()
    return out


def _report_cli(db: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        asg_audit("report", "--db", str(db), "--out", str(out), "--format", "json"),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=180,
    )


def _users_latest_folder(out: Path) -> None:
    (out / "latest").mkdir(parents=True)
    (out / "latest" / "notes.txt").write_text("my notes")


def _users_latest_file(out: Path) -> None:
    out.mkdir(parents=True)
    (out / "latest").write_text("my file")


def _users_latest_link(out: Path) -> None:
    (out / "mine").mkdir(parents=True)
    (out / "latest").symlink_to(out.parent, target_is_directory=True)


def _users_pointer_file(out: Path) -> None:
    out.mkdir(parents=True)
    (out / "LATEST").write_text("my own to-do list\nline two\n")


def _users_pointer_folder(out: Path) -> None:
    (out / "LATEST").mkdir(parents=True)
    (out / "LATEST" / "keep.txt").write_text("keep")


def _users_empty_latest_folder(out: Path) -> None:
    (out / "latest").mkdir(parents=True)


USERS = [
    _users_latest_folder,
    _users_latest_file,
    _users_latest_link,
    _users_pointer_file,
    _users_pointer_folder,
    _users_empty_latest_folder,
]


@pytest.mark.parametrize("make", USERS, ids=lambda f: f.__name__)
def test_report_cli_refuses_a_latest_not_its_own_exit_2_untouched(
    db: Path, tmp_path: Path, make: object
) -> None:
    out = tmp_path / "reports"
    make(out)  # type: ignore[operator]
    before = _tree(out)
    for _ in range(2):  # the second report once copied again over the first one's copy
        done = _report_cli(db, out)
        assert done.returncode == 2, done.stderr
        assert "cannot point latest at the report" in done.stderr
        assert "kept as it is, nothing written" in done.stderr
        assert "Traceback" not in done.stderr
        assert _tree(out) == before  # no run folder, no staging folder, nothing replaced


@pytest.mark.parametrize("make", USERS, ids=lambda f: f.__name__)
def test_render_refuses_a_latest_not_its_own_with_config_error(
    audit: Audit, tmp_path: Path, make: object
) -> None:
    out = tmp_path / "reports"
    make(out)  # type: ignore[operator]
    before = _tree(out)
    with pytest.raises(ConfigError, match="cannot point latest at the report"):
        render(audit, out, formats="json", run_id="r1")
    assert _tree(out) == before


def test_our_own_latest_and_pointer_are_replaced(audit: Audit, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    render(audit, out, formats="json", run_id="r1")
    render(audit, out, formats="json", run_id="r2")
    assert os.readlink(out / "latest") == "r2"
    assert (out / "LATEST").read_text() == "r2\n"
    (out / "latest").unlink()
    (out / "latest").symlink_to("r-gone", target_is_directory=True)  # a run since deleted
    render(audit, out, formats="json", run_id="r3")
    assert os.readlink(out / "latest") == "r3"
    assert sorted(p.name for p in out.iterdir()) == ["LATEST", "latest", "r1", "r2", "r3"]


@pytest.mark.parametrize("marker", [True, False], ids=["marked copy", "copy made before markers"])
def test_a_copy_we_made_as_latest_becomes_a_symlink(
    audit: Audit, tmp_path: Path, marker: bool
) -> None:
    out = tmp_path / "reports"
    render(audit, out, formats="html,json", run_id="r1")
    (out / "latest").unlink()
    # `latest` as a report made it where symlinks fail: a copy of the run
    (out / "latest").mkdir()
    for item in (out / "r1").iterdir():
        (out / "latest" / item.name).write_bytes(item.read_bytes())
    if marker:
        (out / "latest" / COPY_MARKER).write_text("r1\n")
    render(audit, out, formats="json", run_id="r2")
    assert (out / "latest").is_symlink()
    assert os.readlink(out / "latest") == "r2"
    assert sorted(p.name for p in out.iterdir()) == ["LATEST", "latest", "r1", "r2"]


def test_a_copy_with_a_file_of_the_users_added_is_kept(audit: Audit, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    render(audit, out, formats="json", run_id="r1")
    (out / "latest").unlink()
    (out / "latest").mkdir()
    (out / "latest" / "summary.json").write_text((out / "r1" / "summary.json").read_text())
    (out / "latest" / COPY_MARKER).write_text("r1\n")
    (out / "latest" / "notes.txt").write_text("mine")
    before = _tree(out)
    with pytest.raises(ConfigError, match="a folder asg-audit did not make"):
        render(audit, out, formats="json", run_id="r2")
    assert _tree(out) == before


def test_pointing_latest_refuses_a_folder_made_after_the_check(tmp_path: Path) -> None:
    # the same check again at the moment of pointing (another program may have made it since)
    root = tmp_path / "reports"
    (root / "r1").mkdir(parents=True)
    (root / "r1" / "summary.json").write_text("{}\n")
    _users_latest_folder(root)
    with pytest.raises(ConfigError, match="the run folder is complete"):
        _point_latest(root, "r1")
    assert (root / "latest" / "notes.txt").read_text() == "my notes"
    assert not (root / "LATEST").exists()


# -- an existing entry at the run id --------------------------------------------------------


def _users_folder(path: Path) -> None:
    path.mkdir(parents=True)
    (path / "precious.csv").write_text("x")


def _users_empty_folder(path: Path) -> None:
    path.mkdir(parents=True)


def _users_file(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text("x")


def _users_link(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.symlink_to(path.parent.parent, target_is_directory=True)


def _report_of_another_run(path: Path) -> None:
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps({"run_id": "other"}))


@pytest.mark.parametrize(
    "make",
    [_users_folder, _users_empty_folder, _users_file, _users_link, _report_of_another_run],
    ids=lambda f: f.__name__,
)
def test_render_refuses_a_run_id_whose_place_is_taken(
    audit: Audit, tmp_path: Path, make: object
) -> None:
    out = tmp_path / "reports"
    make(out / "data")  # type: ignore[operator]
    before = _tree(out)
    with pytest.raises(ConfigError, match="cannot write the report of run 'data' there"):
        render(audit, out_dir=out, run_id="data")
    assert _tree(out) == before  # nothing deleted, no latest, no staging folder left


def test_render_replaces_its_own_earlier_report_of_the_run_only(
    audit: Audit, tmp_path: Path
) -> None:
    out = tmp_path / "reports"
    render(audit, out, run_id="nightly")
    again = render(audit, out, run_id="nightly", formats="json")
    assert sorted(p.name for p in again.folder.iterdir()) == ["summary.json"]
    (out / "nightly" / "notes.txt").write_text("added by hand")
    before = _tree(out)
    with pytest.raises(ConfigError, match="not an earlier report of this run"):
        render(audit, out, run_id="nightly", formats="json")
    assert _tree(out) == before
