"""Limits, pure: a token bucket per key (the embedded coordination's rate limits), rules and
how a bot's overrides combine with the server's, and open connections per client address."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rule:
    """At most ``rate`` events per ``per`` seconds for ``key`` (bursts up to ``rate``)."""

    key: str
    rate: int
    per: float


def stricter(server: int, bot: int | None) -> int:
    """The limit that applies when the server says ``server`` (0: none) and a bot's override
    says ``bot`` (None: none): the stricter wins, so a bot can tighten, never loosen."""
    if bot is None or bot <= 0:
        return server
    return bot if server <= 0 else min(server, bot)


def message_rules(
    scope: str, server_per_minute: int, overrides: Mapping[str, int | None]
) -> list[Rule]:
    """The rate rules of one identity's messages: the server's per-minute limit and the
    bot's ``messages_per_minute`` / ``messages_per_hour`` / ``messages_per_day``, the
    stricter winning per window."""
    windows: Sequence[tuple[str, int, float]] = (
        ("messages_per_minute", server_per_minute, 60.0),
        ("messages_per_hour", 0, 3600.0),
        ("messages_per_day", 0, 86400.0),
    )
    rules = []
    for name, server, per in windows:
        rate = stricter(server, overrides.get(name))
        if rate > 0:
            rules.append(Rule(f"{scope}:{int(per)}", rate, per))
    return rules


class RateLimiter:
    """``rate`` events per ``per`` seconds per key, with bursts up to ``rate``."""

    def __init__(self, rate: int, per: float = 60.0, *, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.per = per
        self._max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated)

    def peek(self, key: str, now: float | None = None) -> float:
        """0.0 if a token is there, else the seconds until one is; takes nothing."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        refill = self.rate / self.per
        tokens, updated = self._buckets.get(key, (float(self.rate), now))
        tokens = min(float(self.rate), tokens + (now - updated) * refill)
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / refill

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


class ConnectionCounter:
    """Open connections per client address, at most ``limit`` each (0: no limit)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def admit(self, address: str) -> bool:
        count = self._open.get(address, 0)
        if self.limit and count >= self.limit:
            return False
        self._open[address] = count + 1
        return True

    def count(self, address: str) -> int:
        return self._open.get(address, 0)

    def snapshot(self) -> dict[str, int]:
        return dict(self._open)

    def release(self, address: str) -> None:
        count = self._open.get(address, 0) - 1
        if count > 0:
            self._open[address] = count
        else:
            self._open.pop(address, None)

    def __len__(self) -> int:
        return len(self._open)
