"""Whether a collector run may believe the API's 404s, and whether the API answers at all.

Pure state, no I/O: the run (`asg_audit.pollrun`) reports what it saw and asks what to do.

A run never believes 404s alone: a task may become `not_found` only once the API proved it
knows our tasks, by a 200 or 202 in this run or by the control task (one this store saw
settle) answering 200. Until then a task past its 404 grace window is *held* and its 404
bodies are *deferred* (written only once trusted: if the base URL is wrong they are no
evidence about the task). When 404s pile up with no proof, the run asks the control task, or,
without one or when it answers 404 too, fails the run: wrong base URL or API version, and no
task made final. A run that got no HTTP answer at all for a while fails too (unreachable), and
so does one whose HTTP answers were all unusable for a while (redirects, 400s, a web server's
page, bodies the normaliser rejects: no 202, no 404 and no accepted 200).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final, Literal

from asg_audit.errors import ApiStatusError, ApiTransientError
from asg_audit.model import printable
from asg_audit.normalize import RawRecord
from asg_audit.redaction import display_url

__all__ = ["ApiTrust"]

# this many 404s and not one 200/202: check the base URL (control task) or stop the run
SUSPECT_404S: Final = 20
CONTROL_PROBE_TRIES: Final = 3
# no HTTP answer at all for this long (clock s, at least UNREACHABLE_MIN_FAILURES failures)
UNREACHABLE_AFTER_S: Final = 10.0
UNREACHABLE_MIN_FAILURES: Final = 3
# answers and not one usable for this long (clock s, at least UNUSABLE_MIN_ANSWERS of them)
UNUSABLE_AFTER_S: Final = 10.0
UNUSABLE_MIN_ANSWERS: Final = 3

Probe = Literal["idle", "wanted", "sent", "done"]


@dataclass(slots=True)
class ApiTrust:
    """What one run has learned about the API it polls (see the module docstring)."""

    base_url: str
    control_task_id: str | None = None
    trusted: bool = False
    held: set[str] = field(default_factory=set)  # tasks not_found but for the proof
    deferred: list[RawRecord] = field(default_factory=list)  # their 404 bodies
    probe: Probe = "idle"
    probe_tries: int = 0
    answered: bool = False  # any HTTP answer at all in this run
    first_failure_at: float | None = None
    usable: bool = False  # a usable answer in this run: a 202, a 404 or an accepted 200
    unusable_statuses: Counter[int] = field(default_factory=Counter)  # of unusable answers
    first_unusable_at: float | None = None

    def trust(self) -> list[RawRecord]:
        """The API knows our tasks (a 200/202): believe its 404s from now on.

        Return the deferred 404 records, which are evidence now and must be written.
        """
        if self.trusted:
            return []
        self.trusted = True
        self.held.clear()
        deferred, self.deferred = self.deferred, []
        if self.probe == "wanted":
            self.probe = "done"
        return deferred

    def suspicious(self, http_404s: int, pending: int) -> bool:
        """Whether the 404s so far, with no proof, call for the control task or a failure."""
        return not self.trusted and (http_404s >= SUSPECT_404S or len(self.held) >= pending)

    def suspect(self, http_404s: int) -> ApiStatusError | None:
        """Only 404s so far: want the control task asked, or return the run's failure."""
        control = self.control_task_id is not None and self.probe_tries < CONTROL_PROBE_TRIES
        if self.probe == "idle" and control:
            self.probe = "wanted"
            return None
        if self.probe in ("wanted", "sent"):
            return None
        return self.wrong_base_url(http_404s)

    def probe_answered(
        self, kind: Literal["known", "not_found", "no_verdict"], http_404s: int
    ) -> tuple[list[RawRecord], ApiStatusError | None]:
        """The control task's answer: (records to write now, the run's failure or None)."""
        self.probe_tries += 1
        if kind == "known":
            self.probe = "done"
            return self.trust(), None
        if kind == "not_found":
            self.probe = "done"
            return [], None if self.trusted else self.wrong_base_url(http_404s)
        self.probe = "idle"  # asked again at the next suspicious 404
        return [], None

    def wrong_base_url(self, http_404s: int) -> ApiStatusError:
        n = http_404s
        control = (
            f"; a task seen settled before ({self.control_task_id}) answered 404 too"
            if self.probe == "done"
            else ""
        )
        return ApiStatusError(
            f"every answer from {display_url(self.base_url)} was 404 ({n:,} of "
            f"{n:,}{control}): wrong ASG_BASE_URL or API version? No task was marked "
            "not found; fix the URL and run collect again",
            status_code=404,
        )

    def unusable(
        self, http_status: int, detail: str, now: float, *, undecided: bool = False
    ) -> ApiStatusError | None:
        """An answer that cannot be used (`detail` says how: `answered 302 (Location: …)`):
        the run's failure once no usable answer came for long enough.

        `undecided`: 200s of this run still await the normaliser's verdict (they are written in
        batches). Any of them may be usable, so the answer is counted but the run not judged;
        the verdict, when it comes, either makes the run usable or counts the rejected 200s here.
        """
        if self.usable:
            return None
        self.unusable_statuses[http_status] += 1
        if self.first_unusable_at is None:
            self.first_unusable_at = now
        waited = now - self.first_unusable_at
        n = self.unusable_statuses.total()
        if undecided or n < UNUSABLE_MIN_ANSWERS or waited < UNUSABLE_AFTER_S:
            return None
        seen = ", ".join(f"{code}: {k:,}" for code, k in self.unusable_statuses.most_common())
        return ApiStatusError(
            f"no usable answer from {display_url(self.base_url)}: {n:,} answers in "
            f"{waited:.0f} s, HTTP status {seen}; none a task's result (last: "
            f"{printable(detail, one_line=True)}): wrong "
            "ASG_BASE_URL (a redirect, a proxy, a web server's page)? No task was marked final; "
            "fix the URL and run collect again",
            status_code=self.unusable_statuses.most_common(1)[0][0],
        )

    def unreachable(self, failures: int, now: float, last_failure: str) -> ApiTransientError | None:
        """A request got no HTTP answer: the run's failure once none came for long enough."""
        if self.answered:
            return None
        if self.first_failure_at is None:
            self.first_failure_at = now
        waited = now - self.first_failure_at
        if failures >= UNREACHABLE_MIN_FAILURES and waited >= UNREACHABLE_AFTER_S:
            return ApiTransientError(
                f"cannot reach the Gateway at {display_url(self.base_url)}: "
                f"no answer to {failures:,} requests in {waited:.0f} s (last: "
                f"{printable(last_failure, one_line=True)}); check ASG_BASE_URL and the network"
            )
        return None
