"""A bounded memory of recently seen keys (the webhook receiver's de-duplication set)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable


class RecentKeys:
    """Keys seen recently: at most `max_keys`, and none first seen over `max_age_seconds` ago.

    Memory stays bounded however long the receiver runs. The oldest keys are forgotten first,
    when new keys are added. Ages come from `clock` (monotonic seconds).
    """

    def __init__(
        self,
        max_keys: int,
        max_age_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_keys < 1 or max_age_seconds <= 0:
            raise ValueError("max_keys and max_age_seconds must be positive")
        self.max_keys = max_keys
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._keys: OrderedDict[str, float] = OrderedDict()  # key -> when first seen, in order

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, keys: Iterable[str], *, age_seconds: float = 0.0) -> None:
        """Remember keys first seen `age_seconds` ago (0: now); forget the oldest beyond bounds.

        Keys must come oldest first across calls (as deliveries arrive) for ages to hold.
        """
        now = self._clock()
        seen_at = now - age_seconds
        for key in keys:
            if key not in self._keys:
                self._keys[key] = seen_at
        self._forget(now)

    def _forget(self, now: float) -> None:
        keys = self._keys
        oldest_allowed = now - self.max_age_seconds
        while keys and (len(keys) > self.max_keys or next(iter(keys.values())) < oldest_allowed):
            keys.popitem(last=False)
