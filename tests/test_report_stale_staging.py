"""A report killed (kill -9) while it was written leaves a hidden staging folder
(`.<run>.<hex>.tmp`); the next report written into the folder removes those untouched for an
hour, and the temporary files a killed writer of `latest`/`LATEST` left. Nothing removed them.
Recent ones (a report being written right now) and anything else are kept.

A real store and `render`; the leftovers are made as a killed writer leaves them, then aged.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from _audit_job import offline_job

import asg_audit as lib


def _age(path: Path, seconds: float) -> None:
    when = time.time() - seconds
    os.utime(path, (when, when), follow_symlinks=False)


def test_next_report_sweeps_stale_staging_folders_only(tmp_path: Path) -> None:
    job = offline_job(tmp_path, 2)
    audit = lib.analyze(job["db"])
    out = tmp_path / "reports"
    lib.render(audit, out, formats="json", run_id="r1")
    stale = out / ".20261129T193448Z-782c3f.68d6610d.tmp"  # killed half-way: some files in it
    stale.mkdir()
    (stale / "index.html").write_text("<html>" + "x" * 1000)
    (stale / "latency.png").write_bytes(b"\x89PNG" + b"0" * 1000)
    _age(stale, 2 * 3600)
    empty = out / ".20261129T192119Z-9a9f05.b6ebb1cf.tmp"  # killed at once: empty
    empty.mkdir()
    _age(empty, 2 * 3600)
    pointer = out / ".LATEST.4242-0badf00d.tmp"
    pointer.write_text("r0\n")
    _age(pointer, 2 * 3600)
    link = out / ".latest.4242-0badf00d.tmp"
    link.symlink_to("r1", target_is_directory=True)
    _age(link, 2 * 3600)
    fresh = out / ".20261129T200000Z-aaaaaa.12345678.tmp"  # a report being written now
    fresh.mkdir()
    (fresh / "summary.json").write_text("{}")
    old_run = out / "r1"
    _age(old_run, 30 * 86400)  # reports themselves are never swept, however old
    other = out / ".notes"
    other.write_text("mine")
    _age(other, 2 * 3600)

    # a user's own hidden .tmp entries (--out may be any folder: `.`, a project): kept
    users = [out / ".build.tmp", out / ".cache.0badf00d.tmp"]  # the second: a report's shape
    for folder in users:
        folder.mkdir()
        (folder / "data").write_text("important")
        _age(folder, 2 * 3600)
    draft = out / ".draft.tmp"
    draft.write_text("notes")
    _age(draft, 2 * 3600)

    lib.render(audit, out, formats="json", run_id="r2")

    left = sorted(p.name for p in out.iterdir())
    mine = [".build.tmp", ".cache.0badf00d.tmp", ".draft.tmp"]
    assert left == sorted(["r1", "r2", "latest", "LATEST", fresh.name, ".notes", *mine])
    assert all((folder / "data").read_text() == "important" for folder in users)
    assert (fresh / "summary.json").read_text() == "{}"
    assert (out / "LATEST").read_text() == "r2\n"
