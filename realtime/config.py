"""Configuration: one frozen :class:`Settings`, read from the environment once.

Every field documents its environment variable and default; ``README.md`` lists them all.
Pass the settings explicitly; nothing looks them up globally.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parent.parent
_REPO_DOCS = os.pathsep.join((str(_REPO / "docs"), str(_REPO / "README.md")))


@dataclass(frozen=True, slots=True)
class Settings:
    # server
    host: str = "127.0.0.1"  # REALTIME_HOST
    port: int = 8000  # REALTIME_PORT
    node_id: str = ""  # REALTIME_NODE_ID; a random one when empty
    log_level: str = "info"  # REALTIME_LOG_LEVEL
    # storage and broker
    database_url: str = "sqlite:///./realtime.db"  # REALTIME_DATABASE_URL
    admin_key: str = ""  # REALTIME_ADMIN_KEY; generated and printed once when empty
    redis_url: str = ""  # REALTIME_REDIS_URL: set to share a Redis between nodes
    redis_prefix: str = "rt:"  # REALTIME_REDIS_PREFIX: of every key and channel
    redis_cluster: bool = False  # REALTIME_REDIS_CLUSTER: sharded pub/sub (SPUBLISH)
    redis_outage_grace: float = 10.0  # REALTIME_REDIS_OUTAGE_GRACE: seconds to wait for Redis
    # LLM
    provider: str = "auto"  # REALTIME_PROVIDER: auto | openai | offline
    openai_api_key: str = ""  # OPENAI_API_KEY
    openai_base_url: str = ""  # OPENAI_BASE_URL
    model: str = "gpt-4o-mini"  # REALTIME_MODEL: default model of bots that name none
    llm_connect_timeout: float = 10.0  # REALTIME_LLM_CONNECT_TIMEOUT (seconds)
    llm_read_timeout: float = 60.0  # REALTIME_LLM_READ_TIMEOUT: longest silence mid-stream
    llm_max_retries: int = 2  # REALTIME_LLM_MAX_RETRIES: before the first byte only
    llm_include_usage: bool = True  # REALTIME_LLM_INCLUDE_USAGE: send stream_options
    run_timeout: float = 300.0  # REALTIME_RUN_TIMEOUT: wall time of one run
    max_tool_steps: int = 5  # REALTIME_MAX_TOOL_STEPS: model calls per run that use tools
    history_messages: int = 20  # REALTIME_HISTORY_MESSAGES: past messages sent to the model
    confirmation_ttl: float = 600.0  # REALTIME_CONFIRMATION_TTL: seconds a write waits
    handoff_timeout: float = 600.0  # REALTIME_HANDOFF_TIMEOUT: unclaimed requests return to bot
    presence_grace: float = 30.0  # REALTIME_PRESENCE_GRACE: an agent stays online after leaving
    agent_token_ttl: float = 86400.0  # REALTIME_AGENT_TOKEN_TTL: console login tokens
    # protocol limits
    max_message_chars: int = 10000  # REALTIME_MAX_MESSAGE_CHARS
    max_frame_bytes: int = 65536  # REALTIME_MAX_FRAME_BYTES: larger frames get an error
    ws_max_size: int = 1048576  # REALTIME_WS_MAX_SIZE: larger frames close the socket (1009)
    ws_per_message_deflate: bool = False  # REALTIME_WS_PER_MESSAGE_DEFLATE
    hello_timeout: float = 10.0  # REALTIME_HELLO_TIMEOUT
    queue_limit: int = 5  # REALTIME_QUEUE_LIMIT: messages waiting behind a run
    send_queue_bytes: int = 1048576  # REALTIME_SEND_QUEUE_BYTES: per connection, then close 4008
    max_subscriptions: int = 32  # REALTIME_MAX_SUBSCRIPTIONS: conversations per connection
    messages_per_minute: int = 120  # REALTIME_MESSAGES_PER_MINUTE: per identity
    connections_per_ip: int = 2000  # REALTIME_CONNECTIONS_PER_IP: WebSockets per node, 0: any
    # replay log
    replay_events: int = 4096  # REALTIME_REPLAY_EVENTS: events kept per conversation
    replay_idle_ttl: float = 3600.0  # REALTIME_REPLAY_IDLE_TTL: idle logs are dropped after
    # knowledge
    demo_docs: str = _REPO_DOCS  # REALTIME_DEMO_DOCS: files and folders (os.pathsep-separated)
    citation_threshold: float = 0.3  # REALTIME_CITATION_THRESHOLD: default of bots
    # shutdown
    drain_timeout: float = 10.0  # REALTIME_DRAIN_TIMEOUT: runs get this long to finish
    # cluster
    run_lease_ttl: float = 10.0  # REALTIME_RUN_LEASE_TTL: a dead node's run ends after ~1.5x
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def demo_paths(self) -> list[Path]:
        """The demo bot's documents: the files named, and the .md/.txt files of folders named."""
        found: list[Path] = []
        for entry in filter(None, self.demo_docs.split(os.pathsep)):
            path = Path(entry)
            if path.is_dir():
                found += sorted(p for p in path.iterdir() if p.suffix.lower() in (".md", ".txt"))
            elif path.is_file():
                found.append(path)
        return found

    @property
    def llm_configured(self) -> bool:
        if self.provider == "offline":
            return False
        if self.provider == "openai":
            return True
        return bool(self.openai_api_key or self.openai_base_url)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``REALTIME_*`` (and ``OPENAI_API_KEY``/``OPENAI_BASE_URL``) from ``env``.

        Unknown ``REALTIME_*`` names are kept in ``extra`` so later features can read them;
        a value that does not parse raises ``ValueError`` naming the variable.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        read: set[str] = set()
        for f in fields(cls):
            if f.name == "extra":
                continue
            name = f.name.upper() if f.name.startswith("openai_") else f"REALTIME_{f.name.upper()}"
            read.add(name)
            if name not in env:
                continue
            raw = env[name]
            default = f.default
            try:
                if isinstance(default, bool):
                    values[f.name] = _parse_bool(raw)
                elif isinstance(default, int):
                    values[f.name] = int(raw)
                elif isinstance(default, float):
                    values[f.name] = float(raw)
                else:
                    values[f.name] = raw
            except ValueError as exc:
                raise ValueError(f"{name}={raw!r}: {exc}") from None
        values["extra"] = {
            k: v for k, v in env.items() if k.startswith("REALTIME_") and k not in read
        }
        settings = cls(**values)
        return replace(settings, **overrides) if overrides else settings


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected a boolean (1/0, true/false, yes/no, on/off)")
