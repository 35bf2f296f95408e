"""The SDK-style baseline: what a user of the official Python SDK writes.

One task at a time: submit it, wait ~5 s as the docs say, then `poll_result(task_id,
interval=5)`: a blocking GET every 5 s until a 200. Written with a blocking httpx client (the
SDK uses `requests`); sleeps go through `time.sleep` scaled like the simulator's clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import httpx


@dataclass
class SdkRun:
    tasks: int
    polls: int
    wall_s: float
    cpu_s: float
    delays_s: list[float]


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def poll_result(client: httpx.Client, task_id: str, *, interval: float, sleep) -> tuple[dict, int]:
    """The SDK's poll_result: GET, and on 202 sleep `interval`, until a 200."""
    polls = 0
    while True:
        polls += 1
        answer = client.get(f"/v1/tasks/{task_id}/result")
        if answer.status_code == 200:
            return answer.json(), polls
        if answer.status_code != 202:
            answer.raise_for_status()
        sleep(interval)


def run_sdk_baseline(base_url: str, api_key: str, *, tasks: int, time_scale: float, now) -> SdkRun:
    """Submit and wait for `tasks` tasks one at a time; `now()` is the simulated clock."""

    def sleep(sim_seconds: float) -> None:
        time.sleep(sim_seconds * time_scale)

    delays: list[float] = []
    polls = 0
    wall0, cpu0 = time.monotonic(), time.process_time()
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}) as client:
        for i in range(tasks):
            spec = {
                "task_type": "sentiment",
                "label_spec": {"options": ["positive", "negative", "neutral"]},
                "consensus_threshold": 3,
                "data_url": f"https://data.example.com/sdk/{i}.json",
            }
            task = client.post("/v1/tasks", json=spec).json()
            sleep(5.0)  # "After task creation, wait ~5s before the first GET."
            result, n = poll_result(client, task["task_id"], interval=5.0, sleep=sleep)
            seen_at = now()
            polls += n
            settled = result.get("settled_at") or (result.get("settlement") or {}).get("settled_at")
            if settled:
                delays.append(seen_at - _epoch(settled))
    return SdkRun(tasks, polls, time.monotonic() - wall0, time.process_time() - cpu0, delays)
