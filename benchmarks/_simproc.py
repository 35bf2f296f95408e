"""Serve a simulator world in its own process (so that client CPU is measured alone).

Protocol: argv[1] is a JSON object {seed, tasks, time_scale, faults, world: {...WorldConfig
overrides}, serve_from_s}; the process writes one JSON line {gateway_url, api_key, start_at,
anchor, time_scale, submissions} to stdout, then serves until a line arrives on stdin, answers
it with one JSON line of server stats (plus the ground truth's settled_at per task), and exits.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from asg_audit.sim import WorldConfig, generate_world, run_simulator


def main() -> None:
    spec = json.loads(sys.argv[1])
    overrides = dict(spec.get("world", {}))
    for key in ("span", "live_window"):
        if key in overrides:
            overrides[key] = timedelta(seconds=overrides[key])
    world = generate_world(WorldConfig(seed=spec["seed"], tasks=spec["tasks"], **overrides))
    if spec.get("serve_from_s") is not None:
        # serve from an earlier moment, so that the world's tasks arrive as a stream
        first = min(t.created_at for t in world.tasks)
        world = dataclasses.replace(world, now_at=first + int(spec["serve_from_s"]))
    folder = Path(tempfile.mkdtemp(prefix="asg-bench-"))
    subs = world.write_submissions(folder / "submissions.ndjson")
    with run_simulator(
        world, time_scale=spec["time_scale"], faults=spec.get("faults", "none")
    ) as sim:
        now, mono = sim.clock.now(), time.monotonic()
        info = {
            "gateway_url": sim.gateway_url,
            "api_key": sim.api_key,
            "start_at": now,
            "anchor": mono,
            "time_scale": spec["time_scale"],
            "submissions": str(subs),
        }
        print(json.dumps(info), flush=True)
        sys.stdin.readline()
        stats = sim.stats()["gateway"]
        truth = {
            t.task_id: {
                "created_at": t.created_at,
                "settled_at": t.settled_at,
                "status": t.final_status,
            }
            for t in world.tasks
        }
        print(json.dumps({"stats": stats, "truth": truth}), flush=True)


if __name__ == "__main__":
    main()
