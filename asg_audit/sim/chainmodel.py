"""Block times and heights of the simulated chain: a block about every ten minutes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["BlockSchedule"]

BLOCK_INTERVAL_S = 600
BASE_HEIGHT = 920_000
MIN_CONFIRM_DELAY_S = 3  # a transaction is mined at least this long after its broadcast


@dataclass(frozen=True)
class BlockSchedule:
    """Block k is mined at `anchor_at + 600 k + jitter(k)`, jitter(0) = 0, under 240 s.

    The anchor sits 90 s before serving starts, so transactions settled in the last 80 s are
    legitimately unconfirmed at "now" and confirm about ten minutes later.
    """

    anchor_at: int
    seed: int

    def _jitter(self, k: int) -> int:
        if k == 0:
            return 0
        digest = hashlib.sha256(f"{self.seed}:block:{k}".encode()).digest()
        return int.from_bytes(digest[:4], "big") % 240

    def time_of(self, k: int) -> int:
        """Return block k's time (epoch seconds)."""
        return self.anchor_at + BLOCK_INTERVAL_S * k + self._jitter(k)

    def height_of(self, k: int) -> int:
        """Return block k's height."""
        return BASE_HEIGHT + k

    def hash_of(self, k: int) -> str:
        """Return block k's hash (hex, with the leading zeros of proof of work)."""
        digest = hashlib.sha256(f"{self.seed}:blockhash:{k}".encode()).hexdigest()
        return "0" * 16 + digest[16:]

    def block_for(self, broadcast_at: int) -> int:
        """Return the first block mined at least MIN_CONFIRM_DELAY_S after `broadcast_at`."""
        target = broadcast_at + MIN_CONFIRM_DELAY_S
        k = (target - self.anchor_at) // BLOCK_INTERVAL_S - 1
        while self.time_of(k) < target:
            k += 1
        return k

    def tip_at(self, now: float) -> int:
        """Return the last block mined at or before `now`."""
        k = int((now - self.anchor_at) // BLOCK_INTERVAL_S) + 1
        while self.time_of(k) > now:
            k -= 1
        return k
