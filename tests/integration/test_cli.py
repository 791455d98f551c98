"""The ``realtime`` admin commands, run as a user runs them, on a fresh SQLite store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

SECRET = "a-webhook-secret-of-16+"


def realtime(tmp_path: Path, *args: str, ok: bool = True) -> Any:
    env = {**os.environ, "REALTIME_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    done = subprocess.run(
        [sys.executable, "-m", "realtime", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode == 0) == ok, done.stderr
    return json.loads(done.stdout) if ok and done.stdout.strip() else done.stderr


def test_tenants_keys_webhooks_and_agents_from_the_shell(tmp_path: Path) -> None:
    tenant = realtime(tmp_path, "tenants", "create", "--name", "Acme Shop")
    assert tenant["id"] == "acme-shop" and "signing_secret" not in tenant
    assert [t["id"] for t in realtime(tmp_path, "tenants", "list")] == ["default", "acme-shop"]

    key = realtime(tmp_path, "keys", "create", "--tenant", "acme-shop", "--scope", "chat")
    assert key["key"].startswith("rtk_") and key["scope"] == "chat"
    listed = realtime(tmp_path, "keys", "list", "--tenant", "acme-shop")
    assert [k["id"] for k in listed] == [key["id"]] and "key" not in listed[0]
    revoked = realtime(tmp_path, "keys", "revoke", key["id"], "--tenant", "acme-shop")
    assert revoked["revoked_at"] is not None
    assert "no such API key" in realtime(tmp_path, "keys", "revoke", "nope", ok=False)

    hook = realtime(
        tmp_path, "webhooks", "add", "--url", "https://example.com/h",
        "--event", "message.sent", "--event", "lead.captured", "--secret", SECRET,
    )  # fmt: skip
    assert hook["events"] == ["message.sent", "lead.captured"]
    assert realtime(tmp_path, "webhooks", "list") == [hook]
    realtime(tmp_path, "webhooks", "delete", hook["id"])
    assert realtime(tmp_path, "webhooks", "list") == []
    assert "'secret'" in realtime(
        tmp_path, "webhooks", "add", "--url", "https://e.com", "--event", "message.sent",
        "--secret", "short", ok=False,
    )  # fmt: skip

    agent = realtime(
        tmp_path, "agents", "add", "--name", "Alice Smith", "--email", "alice@example.com",
        "--password", "correct horse",
    )  # fmt: skip
    assert agent["label"] == "Alice" and "password" not in json.dumps(agent)
