"""Ingest of a folder of small exports: grouped commits against one transaction per file.

Writes N small NDJSON files (R records each, 1% invalid lines) and ingests the folder twice,
each in a fresh process and store: as `asg-audit ingest` does it (small files read whole and
committed in groups), and with every file streamed in its own transaction (the baseline, what
ingest did before). Prints both times and the ratio in one run.

    python benchmarks/ingest_small_files.py                 # 2,000 files of 1 record
    python benchmarks/ingest_small_files.py --pretty        # ... as pretty-printed .json files
    python benchmarks/ingest_small_files.py --files 200 --records 5   # a quick smoke run
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

RUN = """
import sys, time
import asg_audit.ingest_files as ingest
if sys.argv[3] == "streamed":
    ingest.SMALL_FILE_BYTES = -1
t = time.perf_counter()
s = ingest.ingest_paths(sys.argv[2], [sys.argv[1]])
assert len(s.files) == int(sys.argv[4]) and not s.failed_files, s.as_dict()
print(time.perf_counter() - t)
"""


def write_folder(
    folder: Path, files: int, records: int, seed: int = 1, *, pretty: bool = False
) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for f in range(files):
        lines = []
        for r in range(records):
            if rng.random() < 0.01 and not pretty:  # a broken document fails its file
                lines.append('{"task_id": "broken')
                continue
            a = rng.choice((2, 3))
            lines.append(
                json.dumps(
                    indent=2 if pretty else None,
                    obj={
                        "task_id": f"tsk_{f:06d}_{r:03d}",
                        "status": "settled",
                        "consensus_label": rng.choice(["cat", "dog"]),
                        "confidence": a / 3,
                        "worker_count": 3,
                        "agreement_count": a,
                        "bsv_txid": f"{rng.getrandbits(256):064x}",
                        "total_cost_sats": 325 * a,
                        "created_at": "2026-11-01T10:00:00Z",
                        "settled_at": "2026-11-01T10:00:42Z",
                    },
                )
            )
        name = f"result-{f:06d}.json" if pretty else f"result-{f:06d}.jsonl"
        (folder / name).write_text("\n".join(lines) + "\n")


def timed(folder: Path, db: Path, how: str, files: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", RUN, str(folder), str(db), how, str(files)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2_000)
    parser.add_argument("--records", type=int, default=1, help="records per file")
    parser.add_argument(
        "--pretty", action="store_true", help="pretty-printed .json documents instead of NDJSON"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "exports"
        write_folder(folder, args.files, args.records, pretty=args.pretty)
        grouped = timed(folder, Path(tmp) / "grouped.duckdb", "grouped", args.files)
        streamed = timed(folder, Path(tmp) / "streamed.duckdb", "streamed", args.files)
    total = args.files * args.records
    kind = "pretty-printed .json" if args.pretty else "NDJSON"
    print(
        f"\ningest of {args.files:,} {kind} files of {args.records:,} record(s) ({total:,} records)"
    )
    print(f"{'':<44}{'seconds':>10}{'files/s':>12}")
    print(
        f"{'grouped commits (asg-audit ingest)':<44}{grouped:>10.2f}{args.files / grouped:>12,.0f}"
    )
    print(
        f"{'one transaction per file (baseline)':<44}{streamed:>10.2f}{args.files / streamed:>12,.0f}"
    )
    print(f"speed-up = {streamed / grouped:.1f}x")


if __name__ == "__main__":
    main()
