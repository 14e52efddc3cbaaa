"""Helpers shared by the security tests: what the store holds, and raw signed requests."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

from sqlalchemy import func, select

from standins.slack_driver import SlackDriver
from storage.models import Base
from storage.store import Store

FORM = "application/x-www-form-urlencoded"


def row_counts(store: Store) -> dict[str, int]:
    """How many rows each table holds (a change anywhere shows up here)."""
    with store.engine.connect() as connection:
        return {
            name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for name, table in Base.metadata.tables.items()
        }


def effects(store: Store) -> dict[str, int]:
    """Row counts of the tables a request acts on (not the audit trail, not the replay guard's memory)."""
    counts = row_counts(store)
    return {name: count for name, count in counts.items() if name not in ("audit_log", "seen_requests")}


def command_body(text: str, *, user: str = "U100", channel: str = "C100", response_url: str = "") -> bytes:
    """A slash command's form body, with Slack's fields."""
    return urlencode(
        {
            "token": "standin-verification-token",
            "team_id": "T0001",
            "team_domain": "acme",
            "channel_id": channel,
            "channel_name": "ops",
            "user_id": user,
            "user_name": "alice",
            "command": "/vm",
            "text": text,
            "api_app_id": "A0VMBOT",
            "response_url": response_url,
            "trigger_id": "1.2.3",
        }
    ).encode()


def signed_headers(driver: SlackDriver, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    return {"Content-Type": FORM, **driver.sign(body, timestamp if timestamp is not None else int(time.time()))}


def click_body(action_id: str, value: str, *, user: str, channel: str = "C100", response_url: str = "") -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T0001"},
        "api_app_id": "A0VMBOT",
        "container": {"type": "message", "message_ts": "1.000001", "channel_id": channel, "is_ephemeral": True},
        "trigger_id": "1.2.3",
        "team": {"id": "T0001", "domain": "acme"},
        "channel": {"id": channel, "name": "ops"},
        "response_url": response_url,
        "actions": [{"action_id": action_id, "block_id": "park_confirmation", "value": value, "type": "button",
                     "action_ts": f"{time.time():.6f}", "text": {"type": "plain_text", "text": "Park"}}],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()
