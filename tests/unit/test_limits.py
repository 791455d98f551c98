"""Unit tests for the in-process token bucket."""

from __future__ import annotations

import pytest

from realtime.limits import RateLimiter


def test_burst_then_retry_after() -> None:
    limiter = RateLimiter(3, per=60.0)  # one token every 20 s
    assert [limiter.hit("k", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.hit("k", now=0.0) == pytest.approx(20.0)
    assert limiter.hit("k", now=10.0) == pytest.approx(10.0)
    assert limiter.hit("k", now=20.0) == 0.0
    assert limiter.hit("k", now=20.0) == pytest.approx(20.0)


def test_retry_after_is_exact() -> None:
    limiter = RateLimiter(2, per=1.0)  # a token every 0.5 s
    limiter.hit("k", now=0.0)
    limiter.hit("k", now=0.0)
    wait = limiter.hit("k", now=0.0)
    assert wait == 0.5
    assert limiter.hit("k", now=0.25) == 0.25  # refused hits do not consume anything
    assert limiter.hit("k", now=0.5) == 0.0


def test_refill_is_capped_at_the_burst() -> None:
    limiter = RateLimiter(2, per=10.0)
    assert limiter.hit("k", now=0.0) == 0.0
    # a long idle time refills to `rate` tokens, not more
    results = [limiter.hit("k", now=1000.0) for _ in range(3)]
    assert results[:2] == [0.0, 0.0]
    assert results[2] == pytest.approx(5.0)


def test_keys_are_independent() -> None:
    limiter = RateLimiter(1, per=60.0)
    assert limiter.hit("a", now=0.0) == 0.0
    assert limiter.hit("a", now=0.0) > 0
    assert limiter.hit("b", now=0.0) == 0.0


@pytest.mark.parametrize("rate", [0, -1])
def test_non_positive_rate_means_unlimited(rate: int) -> None:
    limiter = RateLimiter(rate)
    assert all(limiter.hit("k", now=0.0) == 0.0 for _ in range(1000))


def test_partial_refill() -> None:
    limiter = RateLimiter(4, per=4.0)  # one token a second
    for _ in range(4):
        limiter.hit("k", now=0.0)
    assert limiter.hit("k", now=0.5) == pytest.approx(0.5)
    assert limiter.hit("k", now=1.0) == 0.0
    assert limiter.hit("k", now=1.0) == pytest.approx(1.0)


def test_forgetting_full_buckets_does_not_change_outcomes() -> None:
    limiter = RateLimiter(1, per=1.0, max_keys=2)
    assert limiter.hit("a", now=0.0) == 0.0
    assert limiter.hit("b", now=0.0) == 0.0
    # over max_keys: the buckets that are full again ("a", "b") are forgotten
    assert limiter.hit("c", now=5.0) == 0.0
    assert set(limiter._buckets) == {"c"}
    assert limiter.hit("a", now=5.0) == 0.0  # a forgotten bucket starts full, as it was
    assert limiter.hit("c", now=5.0) == pytest.approx(1.0)  # "c" was not forgotten
