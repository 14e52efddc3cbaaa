"""The environment that points a real ``python -m bot`` process at the local stand-ins.

Used by the kill tests and the benchmark, which both run the bot as its own process.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bot_environment(
    *,
    slack: SlackStandin,
    gcp: ComputeStandin,
    database: Path,
    port: int,
    project: str,
    signing_secret: str,
    **settings: str,
) -> dict[str, str]:
    """This process's environment without real Slack/GCP settings, plus the bot's settings for the stand-ins.

    ``settings`` adds further variables, e.g. ``VMBOT_WORKERS="32"``.
    """
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "VMBOT_", "GOOGLE_"))}
    return {
        **inherited,
        "SLACK_BOT_TOKEN": slack.bot_token,
        "SLACK_SIGNING_SECRET": signing_secret,
        "GOOGLE_CLOUD_PROJECT": project,
        "SLACK_API_URL": slack.api_url,
        "VMBOT_COMPUTE_ENDPOINT": gcp.url,
        "DATABASE_URL": f"sqlite:///{database}",
        "PORT": str(port),
        "PYTHONUNBUFFERED": "1",
        **settings,
    }
