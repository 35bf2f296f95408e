"""`stopsignals.held_stops`: a stop signal from `begin()` on waits for the block's end, then
reaches the handlers that were in place; before `begin()` it acts at once. Real signals,
raised in this process's main thread."""

from __future__ import annotations

import signal
from types import FrameType

import pytest

from asg_audit.stopsignals import held_stops


def test_a_signal_before_begin_acts_at_once() -> None:
    steps: list[str] = []
    with pytest.raises(KeyboardInterrupt), held_stops() as hold:
        signal.raise_signal(signal.SIGINT)
        steps.append("after the signal")  # never reached
        hold.begin()
    assert steps == []


def test_a_signal_after_begin_waits_for_the_end_of_the_block() -> None:
    steps: list[str] = []
    with pytest.raises(KeyboardInterrupt), held_stops() as hold:
        hold.begin()
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)  # a second one is the same stop
        steps.append("counted")
    assert steps == ["counted"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_held_signal_reaches_the_handlers_in_place_once() -> None:
    seen: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        with held_stops() as hold:
            hold.begin()
            signal.raise_signal(signal.SIGTERM)
            assert seen == []
        assert seen == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is handler
        # no signal held: nothing sent at the end
        with held_stops() as hold:
            hold.begin()
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_an_ignored_signal_stays_ignored() -> None:
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with held_stops() as hold:
            hold.begin()
            signal.raise_signal(signal.SIGTERM)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)
