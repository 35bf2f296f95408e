"""Benchmark: the full `analyze` (every analysis and check, no rendering) on N settled tasks.

Generates N settled tasks (both result shapes) and their submissions straight into a DuckDB
store with SQL (cached under benchmarks/.data/), then times, each in its own process so that
peak RSS is its own: `asg_audit.analyze`, the pandas baseline (benchmarks/baselines/
analyses_pandas.py) and bare DuckDB SQL for the latency quantiles (the engine's floor).

    .venv/bin/python benchmarks/analyses.py               # 10,000,000 tasks
    .venv/bin/python benchmarks/analyses.py --tasks 200000  # a quick smoke run
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / ".data"
TARGET_SPEEDUP = 3.0
TARGET_RSS_GIB = 6.0
PANDAS_MEMORY_LIMIT_GIB = 14.0
AS_OF = datetime(2026, 12, 1, tzinfo=UTC)

GENERATE_SQL = """
INSERT INTO submissions
SELECT task_id, task_type, t, options, created_at, NULL, 'bench', i, created_at FROM base;
INSERT INTO results
SELECT task_id, 'settled', label, a / w::DOUBLE, w, a,
       sha256(CASE WHEN i % 10 < 2 THEN 'b' || (i // 2)::VARCHAR ELSE i::VARCHAR END),
       CASE WHEN i % 33 = 0 THEN NULL ELSE 325 * a END, i % 33 = 0, task_type,
       created_at, settled_at, NULL, CASE WHEN i % 2 = 0 THEN 'flat' ELSE 'nested' END,
       []::VARCHAR[], settled_at + INTERVAL 3 SECOND, settled_at + INTERVAL 3 SECOND,
       settled_at + INTERVAL 3 SECOND, ['file'], 1, 0
FROM (
    SELECT *, least(greatest(t // 2 + 1, w - (i % 3)::INT), w) AS a FROM (
        SELECT *, t + CASE WHEN i % 7 = 0 THEN 1 ELSE 0 END AS w FROM base
    )
);
"""

BASE_SQL = """
CREATE TEMP TABLE base AS
SELECT i, 'tsk_' || lpad(i::VARCHAR, 12, '0') AS task_id,
       ['image_classification', 'sentiment', 'content_moderation', 'intent'][1 + i % 4]
           AS task_type,
       [2, 3, 3, 3, 5, 7, 3][1 + i % 7]::INTEGER AS t,
       ['cat', 'dog', 'bird', 'other'] AS options,
       ['cat', 'dog', 'bird', 'other'][1 + (i // 7) % 4] AS label,
       TIMESTAMPTZ '2026-09-01 00:00:00+00' + to_microseconds((i * 250000)::BIGINT) AS created_at,
       created_at + to_microseconds(
           -- a batch (i % 10 < 2, pairs sharing a txid) settles together
           (least(1800, greatest(8, exp(ln(42) + 0.45 * sqrt(-2 * ln(random() + 1e-12))
               * cos(2 * pi() * random())))) * 1e6)::BIGINT
       ) AS settled_at
FROM range(?) r(i);
"""


def generate(tasks: int) -> Path:
    """Return the cached store with `tasks` settled tasks, generating it when absent."""
    from asg_audit.store import open_store

    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"analyses_{tasks}.duckdb"
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp.duckdb")
    tmp.unlink(missing_ok=True)
    started = time.perf_counter()
    with open_store(tmp) as store:
        store.con.execute("SELECT setseed(0.42)")
        store.con.execute(BASE_SQL, [tasks])
        # pairs in a batch share settled_at: copy the first member's onto the second
        store.con.execute(
            "UPDATE base SET settled_at = b.settled_at + (base.i - b.i) * INTERVAL 250 MILLISECOND"
            " FROM base b WHERE base.i % 10 = 1 AND b.i = base.i - 1"
        )
        for statement in GENERATE_SQL.split(";"):
            if statement.strip():
                store.con.execute(statement)
    tmp.rename(path)
    print(f"generated {tasks:,} tasks in {time.perf_counter() - started:.1f} s -> {path}")
    return path


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def run_part(part: str, path: Path) -> dict[str, float]:
    """Run one contender in this process; return its wall time and peak RSS."""
    started = time.perf_counter()
    extra: dict[str, float] = {}
    if part == "polars":
        from asg_audit import analyze

        audit = analyze(path, as_of=AS_OF)
        extra = {"findings": audit.findings.height,
                 "p50": audit["latency_overall"]["p50_s"][0]}  # fmt: skip
    elif part == "pandas":
        # The machine is shared: let pandas fail with MemoryError rather than starve others.
        limit = int(PANDAS_MEMORY_LIMIT_GIB * 1024**3)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        sys.path.insert(0, str(HERE / "baselines"))
        from analyses_pandas import analyze_pandas

        out = analyze_pandas(str(path), as_of=AS_OF)
        extra = {"findings": out["findings"], "p50": out["p50"]}
    elif part == "duckdb":
        import duckdb

        con = duckdb.connect(str(path), read_only=True)
        con.sql(
            "SELECT count(*), avg(l), quantile_cont(l, [0.5, 0.9, 0.95, 0.99]), max(l) FROM ("
            " SELECT epoch(settled_at) - epoch(created_at) AS l FROM results"
            " WHERE status = 'settled')"
        ).fetchall()
    else:
        raise SystemExit(f"unknown part {part}")
    return {"seconds": time.perf_counter() - started, "rss_gib": _peak_rss_gib(), **extra}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000_000)
    parser.add_argument("--part", choices=["polars", "pandas", "duckdb"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    path = generate(args.tasks)
    if args.part:
        print(json.dumps(run_part(args.part, path)))
        return 0
    results = {}
    for part in ("polars", "pandas", "duckdb"):
        out = subprocess.run(
            [sys.executable, __file__, "--tasks", str(args.tasks), "--part", part],
            check=False, capture_output=True, text=True,
        )  # fmt: skip
        if out.returncode != 0:
            tail = (out.stderr.strip().splitlines() or ["?"])[-1]
            print(f"{part}: failed ({tail})")
            continue
        results[part] = json.loads(out.stdout.strip().splitlines()[-1])
    ours = results["polars"]["seconds"]
    print(f"\nanalyses benchmark: {args.tasks:,} settled tasks (2 cores shared)\n")
    print("| contender | time (s) | vs asg_audit | peak RSS (GiB) |")
    print("|---|---:|---:|---:|")
    names = {"polars": "asg_audit.analyze (polars)", "pandas": "pandas baseline",
             "duckdb": "bare DuckDB SQL, latency quantiles only"}  # fmt: skip
    for part, r in results.items():
        print(f"| {names[part]} | {r['seconds']:.1f} | {r['seconds'] / ours:.2f}x "
              f"| {r['rss_gib']:.2f} |")  # fmt: skip
    rss_ok = results["polars"]["rss_gib"] <= TARGET_RSS_GIB
    if "pandas" not in results:
        print(
            f"\npandas did not finish within {PANDAS_MEMORY_LIMIT_GIB:g} GiB; "
            f"peak RSS {results['polars']['rss_gib']:.2f} GiB (target <= {TARGET_RSS_GIB:g})"
        )
        return 0 if rss_ok else 1
    speedup = results["pandas"]["seconds"] / ours
    same = results["pandas"]["p50"] == results["polars"]["p50"]
    print(f"\nspeed-up over pandas: {speedup:.1f}x (target >= {TARGET_SPEEDUP:g}x); "
          f"peak RSS {results['polars']['rss_gib']:.2f} GiB (target <= {TARGET_RSS_GIB:g}); "
          f"same p50: {same}")  # fmt: skip
    return 0 if speedup >= TARGET_SPEEDUP and rss_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
