"""Threads of one process creating one new store at the same moment (tester T3: of four
threads ingesting into a store that did not exist, two or three met DuckDB's catalog conflicts
(`Catalog write-write conflict`, `Table with name "runs" already exists`) or were told the
new store was damaged; two processes were told "database busy", as documented)."""

from __future__ import annotations

import threading
from pathlib import Path

from _records import settled_line

import asg_audit
from asg_audit.store import open_store

THREADS = 6


def test_threads_creating_one_store_each_store_their_file(tmp_path: Path) -> None:
    for attempt in range(5):  # the race is a matter of timing: a few fresh stores
        db = tmp_path / f"new{attempt}.duckdb"
        exports = []
        for i in range(THREADS):
            export = tmp_path / f"a{attempt}_{i}.ndjson"
            export.write_text(settled_line(f"t{i}") + "\n")
            exports.append(export)
        start = threading.Barrier(THREADS)
        outcome: dict[int, object] = {}

        def ingest(i: int) -> None:
            start.wait()
            try:
                outcome[i] = asg_audit.ingest(db, exports[i]).accepted
            except Exception as exc:  # what each thread met is the answer
                outcome[i] = exc

        threads = [threading.Thread(target=ingest, args=(i,)) for i in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert outcome == dict.fromkeys(range(THREADS), 1), outcome
        with open_store(db, read_only=True) as store:
            assert store.count("results") == THREADS
            assert store.count("runs") == THREADS
