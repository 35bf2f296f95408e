"""A stop signal raised as a file's transaction commits (tester A1, one SIGINT in 17 of 29
tries near the 6th of 8 files): the file was stored, but the run's stats and the message
left it out, as if rolled back.

Now a stop signal that arrives from a file's (or a group's) commit until it is counted waits
for the counting (`stopsignals.held_stops`), then stops the ingest before the next file: the
run's stats, `ingested_files` and `observations` agree. The signal is a real SIGINT, raised
in-process right after the store's commit returns, through the real ingest and store; for a
large file and for a group of small ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _hardening_procs import query
from _records import settled_record
from _signal_at_commit import sigint_after_commit

from asg_audit.ingest_files import SMALL_FILE_BYTES, ingest_paths


def _files(folder: Path, sizes: list[int]) -> list[Path]:
    paths = []
    for n, records in enumerate(sizes):
        path = folder / f"part{n}.ndjson"
        with path.open("w") as fh:
            for i in range(records):
                fh.write(json.dumps(settled_record(f"tsk_{n}_{i:06d}")) + "\n")
        paths.append(path)
    return paths


@pytest.mark.parametrize("large", [True, False], ids=["large_files", "small_files"])
def test_a_stop_as_a_commit_returns_counts_the_stored_file_and_stops(
    large: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # large files: one transaction each; small ones: one per group (a group ends at 4 MiB)
    sizes = [6_000, 6_000, 6_000] if large else [2_000] * 12
    paths = _files(tmp_path, sizes)
    assert all((p.stat().st_size > SMALL_FILE_BYTES) == large for p in paths)
    db = tmp_path / "s.duckdb"
    sent = sigint_after_commit(monkeypatch, "SELECT count(*) FROM ingested_files")
    with pytest.raises(KeyboardInterrupt):
        ingest_paths(db, paths, progress=False)
    monkeypatch.undo()
    assert sent, "no commit stored a file"
    (status, stats_text), *_ = query(db, "SELECT status, stats FROM runs WHERE command = 'ingest'")
    stats = json.loads(stats_text)
    stored_files = query(db, "SELECT path, records FROM ingested_files ORDER BY path")
    (observations,) = query(db, "SELECT count(*) FROM observations")[0]
    listed = {f["path"]: f for f in stats["files"] if f["status"] == "ingested"}
    assert status == "interrupted"
    # what the run says it stored is what the store holds, file by file and in total
    assert sorted((p, f["records"]) for p, f in listed.items()) == stored_files
    assert len(stored_files) == sent[0] and stored_files
    assert stats["records"] == stats["accepted"] == observations == sum(n for _, n in stored_files)
    assert stats["new_results"] == observations
    # and it stopped there: no file after the one stored was read
    assert len(stored_files) < len(paths)
    assert not [f for f in stats["files"] if f["status"] not in ("ingested",)]
