"""A real SIGINT raised in-process just after the store commits some work (tests' helper)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

import pytest

from asg_audit.store import Store


def sigint_after_commit(monkeypatch: pytest.MonkeyPatch, count_sql: str) -> list[int]:
    """Patch `Store.transaction` so that the first outermost transaction after whose commit
    `count_sql` (a `SELECT count(*) ...`) counts something raises SIGINT, once.

    Return the list the count is appended to when the signal is sent (empty if never).
    """
    transaction = Store.transaction
    sent: list[int] = []

    @contextlib.contextmanager
    def signal_after_commit(self: Store) -> Iterator[object]:
        outer = self._depth == 0
        with transaction(self) as con:
            yield con
        if outer and not sent:
            stored = self.con.execute(count_sql).fetchone()
            if stored and stored[0]:
                sent.append(int(stored[0]))
                signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(Store, "transaction", signal_after_commit)
    return sent
