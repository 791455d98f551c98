"""Prometheus figures, in a registry per app (so tests can run several apps side by side)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.ws_connections = Gauge(
            "realtime_ws_connections", "Open WebSocket connections", ["endpoint"], registry=r
        )
        self.ws_frames_in = Counter(
            "realtime_ws_frames_received_total", "Client frames received", registry=r
        )
        self.ws_errors = Counter(
            "realtime_ws_errors_total", "Error frames sent to clients", ["code"], registry=r
        )
        self.ws_closes = Counter(
            "realtime_ws_server_closes_total",
            "Connections the server closed",
            ["reason"],
            registry=r,
        )
        self.runs_active = Gauge("realtime_runs_active", "Runs in progress", registry=r)
        self.runs_started = Counter("realtime_runs_started_total", "Runs started", registry=r)
        self.runs_finished = Counter(
            "realtime_runs_finished_total", "Runs ended, by outcome", ["outcome"], registry=r
        )
        self.run_seconds = Histogram(
            "realtime_run_duration_seconds", "Run wall time", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.first_token_seconds = Histogram(
            "realtime_time_to_first_token_seconds",
            "From run start to its first token",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter("realtime_tokens_relayed_total", "Token deltas published", registry=r)
        self.events = Counter("realtime_events_published_total", "Events published", registry=r)
        self.messages = Counter(
            "realtime_messages_accepted_total", "User messages stored", registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
