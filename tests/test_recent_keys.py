"""The receiver's bounded de-duplication memory, with a hand-driven clock."""

from __future__ import annotations

import pytest

from asg_audit.recent_keys import RecentKeys


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_recent_keys_forget_the_oldest_beyond_the_count() -> None:
    keys = RecentKeys(3, 60, clock=Clock())
    keys.add(["a", "b"])
    keys.add(["c", "d"])
    assert [k in keys for k in "abcd"] == [False, True, True, True]
    assert len(keys) == 3


def test_recent_keys_forget_keys_older_than_the_window() -> None:
    clock = Clock()
    keys = RecentKeys(100, 60, clock=clock)
    keys.add(["a"])
    clock.now += 30
    keys.add(["b"])
    clock.now += 31  # a is 61 s old, b 31 s
    keys.add(["c"])
    assert ("a" in keys, "b" in keys, "c" in keys) == (False, True, True)


def test_recent_keys_a_key_seen_again_keeps_its_first_time() -> None:
    clock = Clock()
    keys = RecentKeys(100, 60, clock=clock)
    keys.add(["a"])
    clock.now += 50
    keys.add(["a", "b"])
    clock.now += 20
    keys.add([])
    assert ("a" in keys, "b" in keys) == (False, True)


def test_recent_keys_loaded_with_ages_are_forgotten_by_them() -> None:
    clock = Clock()
    keys = RecentKeys(100, 60, clock=clock)
    keys.add(["old"], age_seconds=59)
    keys.add(["new"], age_seconds=1)
    clock.now += 2
    keys.add([])
    assert ("old" in keys, "new" in keys) == (False, True)


@pytest.mark.parametrize(("count", "age"), [(0, 60), (5, 0), (5, -1)])
def test_recent_keys_refuse_bounds_that_are_not_positive(count: int, age: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        RecentKeys(count, age)
