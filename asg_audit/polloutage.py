"""When the Gateway has let a collector run down, and the errors that stop the run for it.

Pure state and text, no I/O but a log line: the run (`asg_audit.pollrun`) reports what it saw
and stops as `failed` with the `ApiTransientError` returned (the `collect` command exits 3 for
it and `audit`'s collect step fails, one rule for both).

Down (`Outage`): 10 s or more of requests getting no answer or a 5xx, at least 3, and no usable
answer since; a run that ends with tasks left pending during such an outage, or without a single
usable answer, is `failed` too (`end_failure`).

Rate limits (`Throttle`): a 429 closes the request gate for its Retry-After (at most
`ratelimit.MAX_RETRY_AFTER_S`). A Retry-After longer than `deadline_s` stops the run at once,
saying when to come back: waiting would carry every task past its deadline. A run that gets
nothing but 429s (no 200, 202 or 404) for longer than `deadline_s` stops the same way: every
pending task would be past its deadline, and a task never answered would be polled for ever. A
gate closed for `GATE_ANNOUNCE_S` or more is logged with its reopening time.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

from asg_audit.apitrust import UNREACHABLE_AFTER_S, UNREACHABLE_MIN_FAILURES
from asg_audit.errors import ApiTransientError
from asg_audit.model import printable
from asg_audit.redaction import display_url

__all__ = ["Outage", "Throttle", "end_failure", "seconds_text", "utc_text"]

log = logging.getLogger("asg_audit.collector")

# a 429 closing the request gate for this long (clock seconds) or more is logged, with when
# it reopens
GATE_ANNOUNCE_S: Final = 10.0


@dataclass(slots=True)
class Outage:
    """The requests since the Gateway's last usable answer (a 200 with a status, a 202 or a
    404) that got no HTTP answer or a 5xx: the one rule for when it counts as down.

    Down (`down`): at least `UNREACHABLE_MIN_FAILURES` such requests over
    `UNREACHABLE_AFTER_S` or more, and no usable answer since the first of them. 429s and
    unusable answers neither count nor end an outage (they have rules of their own). A run
    stops as `failed` the moment the Gateway is down; a run that ends (its deadline or time
    budget) with tasks left pending during an outage of that many requests, however short,
    is `failed` too (`ended_down`): its tasks are unresolved because the Gateway was away.
    """

    since: float | None = None  # when the first of them got its error (our clock)
    transport: int = 0
    server: Counter[int] = field(default_factory=Counter)  # 5xx status -> count
    last: str = ""
    ever_usable: bool = False  # a usable answer in this run at all

    def copy(self) -> Outage:
        """Return this outage as it is now (its error, recounted later, says what it was)."""
        return replace(self, server=Counter(self.server))

    def usable(self) -> None:
        self.since, self.transport, self.last, self.ever_usable = None, 0, "", True
        self.server.clear()

    def failed(self, now: float, http_status: int | None, detail: str) -> None:
        if self.since is None:
            self.since = now
        if http_status is None:
            self.transport += 1
        else:
            self.server[http_status] += 1
        self.last = detail

    def failures(self) -> int:
        return self.transport + self.server.total()

    def down(self, now: float) -> bool:
        return self.ended_down() and now - (self.since or now) >= UNREACHABLE_AFTER_S

    def ended_down(self) -> bool:
        return self.since is not None and self.failures() >= UNREACHABLE_MIN_FAILURES

    def describe(self) -> str:
        """Return `12 requests: 9 with no answer (last: …), 3 with a 5xx (503: 3)`."""
        n = self.failures()
        parts = []
        if self.transport:
            parts.append(f"{self.transport:,} with no answer (connection errors, timeouts)")
        if self.server:
            codes = ", ".join(f"{code}: {k:,}" for code, k in self.server.most_common())
            parts.append(f"{self.server.total():,} with a 5xx ({codes})")
        last = printable(self.last, one_line=True)  # the Gateway's text: one line
        return f"{n:,} requests: " + ", ".join(parts) + f" (last: {last})"

    def error(self, base_url: str, now: float, left: int) -> ApiTransientError:
        """Return the error of a run stopped with `left` tasks pending: the Gateway is down."""
        since = self.since if self.since is not None else now
        when = utc_text(since)
        return ApiTransientError(
            f"the Gateway at {display_url(base_url)} is down: no usable answer for "
            f"{seconds_text(now - since)}" + (f" (since {when})" if when else "") + ", "
            f"{self.describe()}: stopped, {tasks_stay(left)} pending; run collect again when "
            "it is back"
        )


def end_failure(
    outage: Outage, base_url: str, stats: Mapping[str, Any], left: int, now: float
) -> ApiTransientError | None:
    """Return why a run that ends with `left` tasks pending is `failed`, or None: the Gateway
    let it down, by an outage still going on (`Outage.ended_down`) or not one usable answer in
    the whole run (`stats` are the run's request counts)."""
    if not left:
        return None
    if outage.ended_down():
        return outage.error(base_url, now, left)
    requests = stats["requests"]
    if not requests or outage.ever_usable:
        return None
    seen = [
        (stats["http_429"], "429 (rate limited)"),
        (stats["http_5xx"], "5xx"),
        (stats["transport_errors"], "no answer"),
        (stats["unusable_bodies"] + stats["http_other"], "unusable"),
    ]
    shown = ", ".join(f"{what}: {n:,}" for n, what in seen if n)
    return ApiTransientError(
        f"the Gateway at {display_url(base_url)} gave no usable answer "
        f"(a 200, 202 or 404) to any of {requests:,} requests ({shown}): stopped, "
        f"{tasks_stay(left)} pending; run collect again later"
    )


class Throttle:
    """A run's 429s: when they stop it, and logging a long closed gate once."""

    def __init__(self, base_url: str, deadline_s: float, started_at: float) -> None:
        self.base_url = base_url
        self.deadline_s = deadline_s
        self.started_at = started_at  # our clock at the start of the run
        # our clock at the last answer about a task (200, 202 or 404): a run that gets
        # nothing but 429s for longer than the deadline stops
        self.last_answer_at: float | None = None
        self._announced = -math.inf  # the reopening time of the last gate logged
        # the error `throttled` returned, for another count of tasks left pending
        self.recount: Callable[[int], ApiTransientError] | None = None

    def throttled(
        self, asked: float | None, resume: float, now: float, pending: int, retry_max_s: float
    ) -> ApiTransientError | None:
        """A 429 closed the gate until `resume` (it asked for `asked` s): return why the run
        stops when it asked for longer than the deadline or when nothing but 429s came for
        longer than the deadline, else log a long gate once with when it reopens."""
        deadline_s = self.deadline_s
        since = self.started_at if self.last_answer_at is None else self.last_answer_at
        only_429s = now - since
        base_url = display_url(self.base_url)
        if only_429s > deadline_s:

            def only_429s_error(left: int) -> ApiTransientError:
                return ApiTransientError(
                    f"the Gateway at {base_url} answered nothing but "
                    f"429 (rate limited) for {seconds_text(only_429s)}, longer than the "
                    f"deadline ({seconds_text(deadline_s)}): stopped, "
                    f"{tasks_stay(left)} pending; run collect again later, or with a "
                    "lower --max-rps"
                )

            self.recount = only_429s_error
            return only_429s_error(pending)
        if asked is not None and asked > deadline_s:
            back = utc_text(now + asked)
            retry_after = asked

            def retry_after_error(left: int) -> ApiTransientError:
                return ApiTransientError(
                    f"the Gateway at {base_url} rate-limited the run "
                    f"(429) with a Retry-After of {seconds_text(retry_after)}, longer than the "
                    f"deadline ({seconds_text(deadline_s)}): stopped, "
                    f"{tasks_stay(left)} pending; run collect again "
                    + (f"after {back}" if back is not None else "later")
                )

            self.recount = retry_after_error
            return retry_after_error(pending)
        wait = resume - now
        if wait < GATE_ANNOUNCE_S or resume < self._announced + GATE_ANNOUNCE_S:
            return None
        self._announced = resume
        capped = ""
        if asked is not None and asked > retry_max_s:
            capped = f" (Retry-After {seconds_text(asked)}, capped)"
        log.warning(
            "collect: rate limited (429): no request for %s%s, until %s",
            seconds_text(wait),
            capped,
            utc_text(resume),
        )
        return None


def tasks_stay(n: int) -> str:
    return "1 task stays" if n == 1 else f"{n:,} tasks stay"


def seconds_text(seconds: float) -> str:
    """Return a wait for a message: `3,600 s`, `1e+308 s`, `an endless wait`."""
    if not math.isfinite(seconds):
        return "an endless wait"
    return f"{seconds:,.0f} s" if seconds < 1e9 else f"{seconds:.3g} s"


def utc_text(at: float) -> str | None:
    """Return a clock time as `2026-01-02T03:04:05Z`, or None past the year 9999."""
    try:
        return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return None
