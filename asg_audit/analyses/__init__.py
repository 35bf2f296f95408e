"""Analyses: pure polars functions, lazy frames in, data frames out; no I/O, no clock reads.

Start from `enrich_tasks(results, submissions)`, then call the functions of `latency`,
`consensus`, `costs` and `collection` on that frame. `asg_audit.analyze` runs all of them.
"""

from __future__ import annotations

from asg_audit.analyses import collection, consensus, costs, latency
from asg_audit.analyses._tasks import enrich_tasks

__all__ = ["collection", "consensus", "costs", "enrich_tasks", "latency"]
