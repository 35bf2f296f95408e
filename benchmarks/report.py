"""Benchmark: what rendering a report adds on top of the analyses, and how big the page is.

Uses the store of benchmarks/analyses.py (N settled tasks generated with SQL, cached under
benchmarks/.data/), runs `analyze` once, then times `render` (html, md, json: every chart drawn)
and prints the sizes. Target (issue 8): rendering 10,000,000 tasks adds at most 3 s, and the
self-contained index.html stays under 2 MB.

    .venv/bin/python benchmarks/report.py                  # 10,000,000 tasks
    .venv/bin/python benchmarks/report.py --tasks 200000   # a quick smoke run
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET_RENDER_SECONDS = 3.0
TARGET_HTML_BYTES = 2_000_000


def _store(tasks: int) -> Path:
    spec = importlib.util.spec_from_file_location("bench_analyses", HERE / "analyses.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return Path(module.generate(tasks))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000_000)
    args = parser.parse_args()

    from asg_audit import analyze, render

    db = _store(args.tasks)
    t0 = time.perf_counter()
    audit = analyze(db)
    analyze_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as out:
        render(audit, out, formats="json")  # warm-up: imports, fonts, template compilation
        t1 = time.perf_counter()
        report = render(audit, out, formats="html,md,json")
        render_s = time.perf_counter() - t1
        sizes = {k: p.stat().st_size for k, p in report.paths.items()}
        pngs = sum(p.stat().st_size for p in report.folder.glob("*.png"))
    result = {
        "tasks": args.tasks,
        "analyze_s": round(analyze_s, 2),
        "render_s": round(render_s, 2),
        "render_share_of_analyze": round(render_s / analyze_s, 3),
        "index_html_bytes": sizes["html"],
        "report_md_bytes": sizes["md"],
        "png_bytes": pngs,
        "summary_json_bytes": sizes["json"],
        "findings": audit.findings.height,
        "charts": len(report.summary["charts"]),
    }
    print(json.dumps(result, indent=2))
    ok = render_s <= TARGET_RENDER_SECONDS and sizes["html"] < TARGET_HTML_BYTES
    print(
        f"render {render_s:.2f} s (target <= {TARGET_RENDER_SECONDS} s), "
        f"index.html {sizes['html'] / 1e6:.2f} MB (target < 2 MB): {'OK' if ok else 'MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
