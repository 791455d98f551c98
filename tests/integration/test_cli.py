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


def test_bots_sources_quotas_and_agent_lists_from_the_shell(tmp_path: Path) -> None:
    bot = realtime(
        tmp_path, "bots", "create", "helpdesk", "--settings",
        '{"name": "Help", "rate_limits": {"messages_per_minute": 5}}',
    )  # fmt: skip
    assert bot["bot_id"] == "helpdesk" and bot["rate_limits"] == {"messages_per_minute": 5}
    assert "uuid" in bot
    updated = realtime(
        tmp_path, "bots", "update", "helpdesk", "--settings", '{"privacy": "private"}'
    )
    assert updated["privacy"] == "private" and updated["name"] == "Help"
    assert "unknown setting" in realtime(
        tmp_path, "bots", "update", "helpdesk", "--settings", '{"colour": 1}', ok=False
    )
    assert "JSON object" in realtime(
        tmp_path, "bots", "create", "x-y-z", "--settings", "[]", ok=False
    )
    assert "helpdesk" in [b["bot_id"] for b in realtime(tmp_path, "bots", "list")]

    doc = tmp_path / "returns.md"
    doc.write_text("# Returns\n\nUnworn items may be returned within 30 days.\n")
    source = realtime(tmp_path, "sources", "add", str(doc), "--bot", "helpdesk")
    assert source["title"] == "returns" and source["chunks"] >= 1
    assert [s["id"] for s in realtime(tmp_path, "sources", "list", "--bot", "helpdesk")] == [
        source["id"]
    ]
    realtime(tmp_path, "sources", "delete", source["id"], "--bot", "helpdesk")
    assert realtime(tmp_path, "sources", "list", "--bot", "helpdesk") == []
    assert "cannot read" in realtime(
        tmp_path, "sources", "add", str(tmp_path / "none.md"), "--bot", "helpdesk", ok=False
    )

    quota = realtime(tmp_path, "tenants", "quota", "--monthly-messages", "1000")
    assert quota["monthly_messages"] == 1000 and quota["usage"]["messages"] == 0
    assert (
        realtime(tmp_path, "tenants", "quota", "--monthly-messages", "none")["monthly_messages"]
        is None
    )
    assert "a number" in realtime(
        tmp_path, "tenants", "quota", "--monthly-messages", "-3", ok=False
    )

    realtime(tmp_path, "bots", "delete", "helpdesk")
    assert "helpdesk" not in [b["bot_id"] for b in realtime(tmp_path, "bots", "list")]
    realtime(
        tmp_path, "agents", "add", "--name", "Bo Lee", "--email", "bo@example.com",
        "--password", "correct horse",
    )  # fmt: skip
    assert [a["email"] for a in realtime(tmp_path, "agents", "list")] == ["bo@example.com"]
