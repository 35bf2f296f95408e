"""`ApiTrust`: when a collector run believes 404s and when it gives up on the API (pure state)."""

from __future__ import annotations

from datetime import UTC, datetime

from asg_audit.apitrust import (
    CONTROL_PROBE_TRIES,
    SUSPECT_404S,
    UNREACHABLE_AFTER_S,
    UNREACHABLE_MIN_FAILURES,
    ApiTrust,
)
from asg_audit.errors import ApiStatusError, ApiTransientError
from asg_audit.model import Source
from asg_audit.normalize import RawRecord

URL = "http://127.0.0.1:9/v1"


def _404(task_id: str) -> RawRecord:
    return RawRecord(
        body=b'{"error": "not found"}',
        source=Source.POLL,
        origin=f"GET /v1/tasks/{task_id}/result",
        observed_at=datetime(2026, 1, 1, tzinfo=UTC),
        task_id_hint=task_id,
        http_status=404,
    )


def test_deferred_404s_are_handed_back_once_when_the_api_proves_it_knows_our_tasks() -> None:
    api = ApiTrust(URL)
    api.deferred += [_404("a"), _404("b")]
    api.held.add("a")
    first = api.trust()
    assert [r.task_id_hint for r in first] == ["a", "b"]
    assert api.trusted and not api.held and not api.deferred
    assert api.trust() == []  # already trusted: nothing twice


def test_404s_become_suspicious_by_count_or_when_every_pending_task_is_held() -> None:
    api = ApiTrust(URL)
    assert not api.suspicious(SUSPECT_404S - 1, pending=10)
    assert api.suspicious(SUSPECT_404S, pending=10)
    api.held.update({"a", "b"})
    assert api.suspicious(2, pending=2)
    api.trust()
    assert not api.suspicious(10 * SUSPECT_404S, pending=1)


def test_without_a_control_task_suspicion_fails_the_run_naming_the_url_not_the_key() -> None:
    api = ApiTrust("https://user:hunter2@example.test/v1")
    failure = api.suspect(25)
    assert isinstance(failure, ApiStatusError)
    message = str(failure)
    assert "25 of 25" in message and "wrong ASG_BASE_URL" in message
    assert "hunter2" not in message


def test_a_control_task_is_asked_first_and_its_200_trusts_the_api() -> None:
    api = ApiTrust(URL, control_task_id="tsk_seen")
    api.deferred.append(_404("x"))
    assert api.suspect(20) is None and api.probe == "wanted"
    api.probe = "sent"
    assert api.suspect(21) is None  # an answer is awaited: no second probe, no failure
    records, failure = api.probe_answered("known", 21)
    assert failure is None and api.trusted and api.probe == "done"
    assert [r.task_id_hint for r in records] == ["x"]


def test_a_control_task_answering_404_fails_the_run_and_says_so() -> None:
    api = ApiTrust(URL, control_task_id="tsk_seen")
    api.suspect(20)
    api.probe = "sent"
    records, failure = api.probe_answered("not_found", 20)
    assert records == [] and isinstance(failure, ApiStatusError)
    assert "tsk_seen" in str(failure) and "answered 404 too" in str(failure)


def test_a_control_probe_without_verdict_is_retried_a_bounded_number_of_times() -> None:
    api = ApiTrust(URL, control_task_id="tsk_seen")
    for _ in range(CONTROL_PROBE_TRIES):
        assert api.suspect(20) is None and api.probe == "wanted"
        api.probe = "sent"
        assert api.probe_answered("no_verdict", 20) == ([], None)
        assert api.probe == "idle"
    assert isinstance(api.suspect(20), ApiStatusError)


def test_unreachable_only_after_enough_failures_over_enough_time_and_never_once_answered() -> None:
    api = ApiTrust(URL)
    assert api.unreachable(1, 100.0, "connect, refused") is None
    assert api.unreachable(UNREACHABLE_MIN_FAILURES, 100.0 + UNREACHABLE_AFTER_S / 2, "x") is None
    failure = api.unreachable(
        UNREACHABLE_MIN_FAILURES, 100.0 + UNREACHABLE_AFTER_S, "connect, refused"
    )
    assert isinstance(failure, ApiTransientError)
    assert "cannot reach" in str(failure) and "connect, refused" in str(failure)
    answered = ApiTrust(URL, answered=True)
    assert answered.unreachable(100, 0.0, "x") is None
    assert answered.unreachable(100, 1e6, "x") is None


def test_unusable_answers_fail_the_run_only_when_none_was_usable_for_a_while() -> None:
    from asg_audit.apitrust import UNUSABLE_AFTER_S

    api = ApiTrust(URL)
    assert api.unusable(302, "answered 302", 0.0) is None
    assert api.unusable(302, "answered 302", UNUSABLE_AFTER_S) is None  # 2 answers: too few
    failure = api.unusable(400, "answered 400", UNUSABLE_AFTER_S)
    assert isinstance(failure, ApiStatusError) and failure.status_code == 302
    assert "3 answers in 10 s, HTTP status 302: 2, 400: 1" in str(failure)
    assert "(last: answered 400)" in str(failure)
    usable = ApiTrust(URL)
    usable.usable = True
    assert all(usable.unusable(302, "x", t) is None for t in (0.0, 100.0, 200.0, 300.0))


def test_unusable_answers_do_not_fail_the_run_while_200s_await_their_verdict() -> None:
    """A few bad bodies among 200s not yet written are a flaky API, not a wrong base URL: the
    run is judged only once those 200s have their verdict (a CI run failed this way)."""
    from asg_audit.apitrust import UNUSABLE_AFTER_S

    api = ApiTrust(URL)
    times = [0.0, 5.0, UNUSABLE_AFTER_S, 2 * UNUSABLE_AFTER_S, 3 * UNUSABLE_AFTER_S]
    assert all(api.unusable(200, "malformed", t, undecided=True) is None for t in times)
    # the verdict: every waiting 200 rejected too, counted like any unusable answer
    failure = api.unusable(200, "a body the normaliser rejected", 3 * UNUSABLE_AFTER_S)
    assert isinstance(failure, ApiStatusError)
    assert "6 answers in 30 s, HTTP status 200: 6" in str(failure)
