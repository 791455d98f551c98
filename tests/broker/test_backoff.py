"""The reconnect schedule: exponential from the base, capped, jittered within its upper half."""

from __future__ import annotations

import pytest

from realtime.broker.backoff import BASE, CAP, backoff_delay


def test_the_schedule_doubles_then_stays_at_the_cap() -> None:
    tops = [backoff_delay(n, rand=lambda: 0.999999) for n in range(1, 12)]
    assert tops[:5] == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.8], rel=1e-4)
    assert tops[-1] == pytest.approx(CAP, rel=1e-4)
    assert all(a <= b for a, b in zip(tops, tops[1:], strict=False))
    assert max(tops) <= CAP


def test_jitter_stays_in_the_upper_half() -> None:
    for n in range(1, 40):
        ceiling = min(CAP, BASE * 2 ** (n - 1))
        low = backoff_delay(n, rand=lambda: 0.0)
        assert low == pytest.approx(ceiling / 2)
        for _ in range(20):
            assert ceiling / 2 <= backoff_delay(n) <= ceiling


def test_no_failure_no_wait_and_huge_counts_do_not_overflow() -> None:
    assert backoff_delay(0) == 0.0
    assert backoff_delay(-3) == 0.0
    assert backoff_delay(10_000) <= CAP
    assert backoff_delay(3, base=1.0, cap=3.0, rand=lambda: 0.5) == pytest.approx(2.25)
