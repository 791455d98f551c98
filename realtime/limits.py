"""In-process rate limits: a token bucket per key (shared limits come with scale-out)."""

from __future__ import annotations

import time


class RateLimiter:
    """``rate`` events per ``per`` seconds per key, with bursts up to ``rate``."""

    def __init__(self, rate: int, per: float = 60.0, *, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.per = per
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated)

    def hit(self, key: str, now: float | None = None) -> float:
        """Take one token; return 0.0 if allowed, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        refill = self.rate / self.per
        tokens, updated = self._buckets.get(key, (float(self.rate), now))
        tokens = min(float(self.rate), tokens + (now - updated) * refill)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / refill
        self._buckets[key] = (tokens - 1.0, now)
        if len(self._buckets) > self._max_keys:
            self._forget_full(now)
        return 0.0

    def _forget_full(self, now: float) -> None:
        refill = self.rate / self.per
        for key, (tokens, updated) in list(self._buckets.items()):
            if tokens + (now - updated) * refill >= self.rate:
                del self._buckets[key]
