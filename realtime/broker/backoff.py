"""How long to wait before trying Redis again: exponential, capped, with jitter.

Every node loses Redis at the same moment when it restarts; waiting a random part of each
delay ("equal jitter": between half the delay and all of it) spreads their reconnects
instead of having them knock all at once, and the cap bounds how late a node notices that
Redis is back.
"""

from __future__ import annotations

import random
from collections.abc import Callable

BASE = 0.05  # seconds before the first retry (at most)
CAP = 2.0  # the longest wait between two tries


def backoff_delay(
    failures: int,
    *,
    base: float = BASE,
    cap: float = CAP,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after the ``failures``-th failure in a row (1, 2, ...).

    The delay doubles from ``base`` with each failure up to ``cap``; the wait is a random
    point of its upper half. ``rand`` returns a number in [0, 1) (tests pass their own).
    """
    if failures < 1:
        return 0.0
    ceiling = min(cap, base * 2.0 ** min(failures - 1, 60))
    return ceiling / 2 + rand() * ceiling / 2
