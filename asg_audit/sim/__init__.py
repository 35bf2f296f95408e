"""A seeded simulator of the ASG Gateway and of the WhatsOnChain chain index.

It is an independent model of the service in `spec/asg-api.md` and `spec/bsv-chain.md`: it
imports only `asg_audit.model` from the package, never our normaliser or parser.
"""

from __future__ import annotations

from asg_audit.sim.anomalies import AnomalyKind
from asg_audit.sim.faults import FaultConfig
from asg_audit.sim.generate import generate_world
from asg_audit.sim.server import ListenError, RunningSimulator, run_simulator
from asg_audit.sim.world import SimTask, World, WorldConfig

__all__ = [
    "AnomalyKind",
    "FaultConfig",
    "ListenError",
    "RunningSimulator",
    "SimTask",
    "World",
    "WorldConfig",
    "generate_world",
    "run_simulator",
]
