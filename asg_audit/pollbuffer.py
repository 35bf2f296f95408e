"""What a collector run has to write: the answers and poll_state rows since its last write.

The run adds to it as answers come; its flush loop takes everything as one batch
(`WriteBuffer.take`) for the store writer (`asg_audit.pollwriter`), one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from asg_audit.model import Source
from asg_audit.normalize import RawRecord
from asg_audit.polltask import FINAL_STATES, PollTask
from asg_audit.pollwriter import dt_utc

__all__ = ["Batch", "RecordKey", "WriteBuffer"]

RecordKey = tuple[str, datetime]  # a record's (origin, observed_at)


@dataclass(slots=True)
class Batch:
    """What one write takes."""

    records: list[RawRecord] = field(default_factory=list)
    rows: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # task id -> poll_state row
    # (origin, observed_at) -> task id of each record, to spot rejected final answers
    origins: dict[RecordKey, str] = field(default_factory=dict)
    # the 200 answers, and a detail for the rejects of other statuses (by record)
    ready_keys: set[RecordKey] = field(default_factory=set)
    notes: dict[RecordKey, str] = field(default_factory=dict)


class WriteBuffer(Batch):
    """The batch being filled: `record` an answer, `row` a task's poll_state."""

    __slots__ = ()

    def record(
        self, body: bytes, origin: str, task_id: str, code: int | None, at: float
    ) -> RecordKey:
        """Add a poll's answer (observed at `at`, our clock); return its key."""
        observed_at = dt_utc(at)
        self.records.append(
            RawRecord(
                body=body,
                source=Source.POLL,
                origin=origin,
                observed_at=observed_at,
                task_id_hint=task_id,
                http_status=code,
            )
        )
        key = (origin, observed_at)
        self.origins[key] = task_id
        return key

    def row(self, t: PollTask, now: float, trusted: bool) -> None:
        """Set `t`'s poll_state row as of `now`; `trusted` is whether the run believes 404s."""
        # a 404 the run does not believe yet (see `ApiTrust`) does not reach the store
        first_404 = t.first_404_at if trusted else t.stored_first_404_at
        self.rows[t.facts.task_id] = (
            t.facts.task_id,
            "pending" if t.state == "parked" else t.state,
            t.attempts,
            None if t.state in FINAL_STATES else dt_utc(t.next_poll_at),
            t.last_http_status,
            None if first_404 is None else dt_utc(first_404),
            dt_utc(now),
        )

    def empty(self) -> bool:
        return not self.records and not self.rows

    def take(self) -> Batch:
        """Return everything buffered, and start afresh."""
        batch = Batch(self.records, self.rows, self.origins, self.ready_keys, self.notes)
        self.records, self.rows, self.origins = [], {}, {}
        self.ready_keys, self.notes = set(), {}
        return batch
