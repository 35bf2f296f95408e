"""Ingest throughput against the engine's floor and a hand-written loop (issue 2).

Generates N records as NDJSON (half flat, half nested, 1% invalid), then prints in one run:
 (a) records/s of `asg-audit ingest` (normalisation, validation, quarantine, results);
 (b) records/s of a bare DuckDB `read_json` load of the same file (no validation): the floor;
 (c) records/s of the loop a user would write (`json.loads` per line + `executemany`), on a
     20,000-line prefix;
 (d) records/s of the least an ingest storing `observations` and `results` can do (one typed
     parse by DuckDB's reader into the first, copied into the second; nothing checked), whose
     ratio to (b) bounds what (a)/(b) could reach;
and the ratios (a)/(b) (target >= 0.6) and (a)/(c) (target >= 100), and the peak RSS of (a)
(target <= 2 GiB). Each measurement runs in a fresh subprocess so RSS and caches do not mix.

    python benchmarks/ingest.py               # 2,000,000 records (file cached in benchmarks/.data)
    python benchmarks/ingest.py --records 50000   # a quick smoke run
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).parent / ".data"
PREFIX_LINES = 20_000


def generate(path: Path, n: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    labels = ["cat", "dog", "bird", "positive", "negative"]
    with path.open("w") as fh:
        for i in range(n):
            a = rng.choice((2, 3))
            txid = f"{rng.getrandbits(256):064x}"
            created = 1_775_000_000 + i
            c = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))
            s = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created + rng.randint(20, 90)))
            if rng.random() < 0.01:
                line = rng.choice(
                    [
                        '{"task_id": "tsk_bad", "worker_count": "3"}',
                        '{"task_id": "x',
                        "[1, 2, 3]",
                        '{"task_id": "t/../x", "status": "settled"}',
                    ]
                )
            elif i % 2:
                line = json.dumps(
                    {
                        "task_id": f"tsk_{i:09d}",
                        "status": "settled",
                        "consensus_label": rng.choice(labels),
                        "confidence": a / 3,
                        "worker_count": 3,
                        "agreement_count": a,
                        "bsv_txid": txid,
                        "total_cost_sats": 325 * a,
                        "created_at": c,
                        "settled_at": s,
                    }
                )
            else:
                line = json.dumps(
                    {
                        "task_id": f"tsk_{i:09d}",
                        "status": "settled",
                        "consensus_label": rng.choice(labels),
                        "confidence": a / 3,
                        "worker_count": 3,
                        "agreement_count": a,
                        "type": "image",
                        "created_at": c,
                        "settlement": {
                            "bsv_txid": txid,
                            "total_cost_sats": 325 * a,
                            "settled_at": s,
                        },
                    }
                )
            fh.write(line + "\n")


def _child(code: str, *args: str) -> tuple[float, int]:
    """Run code in a fresh interpreter; return (seconds it reported, its peak RSS in bytes)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, capture_output=True, text=True
    ).stdout
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return float(out.strip().splitlines()[-1]), max(peak_kib, before) * 1024


OURS = """
import sys, time
from asg_audit.ingest_files import ingest_paths
t = time.perf_counter()
s = ingest_paths(sys.argv[2], [sys.argv[1]])
assert s.records and not s.failed_files, s.as_dict()
print(time.perf_counter() - t)
"""
FLOOR = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[2])
t = time.perf_counter()
con.execute("CREATE TABLE t AS SELECT * FROM read_json(?, format='newline_delimited', ignore_errors=true)", [sys.argv[1]])
print(time.perf_counter() - t)
"""
# The least any ingest that stores what the issue asks for can do: each record parsed once, by
# DuckDB's own reader, into typed columns of `observations`, then copied into `results`. No
# validation, no rejects, no line numbers, no hashes, no result rules: a ceiling for (a)/(b),
# not an ingest (its bad lines become rows of nulls).
SKELETON = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[2])
t = time.perf_counter()
con.execute('''CREATE TABLE observations AS SELECT * FROM read_json(?,
  format = 'newline_delimited', ignore_errors = true, columns = {
    task_id: 'VARCHAR', status: 'VARCHAR', consensus_label: 'VARCHAR', confidence: 'DOUBLE',
    worker_count: 'INTEGER', agreement_count: 'INTEGER', bsv_txid: 'VARCHAR',
    total_cost_sats: 'BIGINT', type: 'VARCHAR', created_at: 'TIMESTAMPTZ',
    settled_at: 'TIMESTAMPTZ',
    settlement: 'STRUCT(bsv_txid VARCHAR, total_cost_sats BIGINT, settled_at TIMESTAMPTZ)'})''',
  [sys.argv[1]])
con.execute('''CREATE TABLE results AS SELECT task_id, status, consensus_label, confidence,
  worker_count, agreement_count, coalesce(settlement.bsv_txid, bsv_txid) AS bsv_txid,
  coalesce(settlement.total_cost_sats, total_cost_sats) AS cost_sats, type AS task_type,
  created_at, coalesce(settlement.settled_at, settled_at) AS settled_at FROM observations''')
print(time.perf_counter() - t)
"""
HAND = """
import sys, time, json, duckdb
con = duckdb.connect(sys.argv[2])
con.execute("CREATE TABLE t (task_id VARCHAR, status VARCHAR, label VARCHAR, confidence DOUBLE, w INTEGER, a INTEGER, txid VARCHAR, cost BIGINT, created VARCHAR, settled VARCHAR)")
t = time.perf_counter()
rows = []
with open(sys.argv[1]) as fh:
    for n, line in enumerate(fh):
        if n >= int(sys.argv[3]):
            break
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if not isinstance(r, dict):
            continue
        s = r.get("settlement") or {}
        rows.append((r.get("task_id"), r.get("status"), r.get("consensus_label"), r.get("confidence"),
                     r.get("worker_count") if isinstance(r.get("worker_count"), int) else None,
                     r.get("agreement_count"), s.get("bsv_txid", r.get("bsv_txid")),
                     s.get("total_cost_sats", r.get("total_cost_sats")), r.get("created_at"),
                     s.get("settled_at", r.get("settled_at"))))
con.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
print(time.perf_counter() - t)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument(
        "--data-dir", type=Path, default=DATA, help="where the generated file is cached"
    )
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    path = args.data_dir / f"ingest-{args.records}.jsonl"
    if not path.exists():
        print(f"generating {args.records:,} records -> {path}", flush=True)
        generate(path, args.records)
    size_mb = path.stat().st_size / 1e6
    prefix = min(PREFIX_LINES, args.records)
    with tempfile.TemporaryDirectory() as tmp:
        ours_s, ours_rss = _child(OURS, str(path), f"{tmp}/ours.duckdb")
        floor_s, _ = _child(FLOOR, str(path), f"{tmp}/floor.duckdb")
        hand_s, _ = _child(HAND, str(path), f"{tmp}/hand.duckdb", str(prefix))
        skeleton_s, _ = _child(SKELETON, str(path), f"{tmp}/skeleton.duckdb")
    a, b, c = args.records / ours_s, args.records / floor_s, prefix / hand_s
    d = args.records / skeleton_s
    print(
        f"\ningest of {args.records:,} records ({size_mb:,.0f} MB NDJSON, half flat, half nested, 1% invalid)"
    )
    print(f"{'':<48}{'seconds':>10}{'records/s':>14}")
    print(f"{'(a) asg-audit ingest (normalise, validate, store)':<48}{ours_s:>10.2f}{a:>14,.0f}")
    print(f"{'(b) bare DuckDB read_json (no validation)':<48}{floor_s:>10.2f}{b:>14,.0f}")
    print(f"{f'(c) json.loads + executemany ({prefix:,} prefix)':<48}{hand_s:>10.2f}{c:>14,.0f}")
    print(f"{'(d) one typed parse into observations + results':<48}{skeleton_s:>10.2f}{d:>14,.0f}")
    print(f"(a)/(b) = {a / b:.2f}  (target >= 0.6)")
    print(
        f"(d)/(b) = {d / b:.2f}  (the best (a)/(b) an ingest storing the two tables could reach,"
        " with no validation, rejects, line numbers or hashes)"
    )
    print(f"(a)/(c) = {a / c:.0f}x  (target >= 100)")
    print(f"peak RSS of (a) = {ours_rss / 2**30:.2f} GiB  (target <= 2 GiB)")


if __name__ == "__main__":
    main()
