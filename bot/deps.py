"""What handlers and background jobs need of the running bot: a small interface, not the whole bot.

bot.app builds one (VmBot is a Deps with the Bolt app and the background
parts on top); handlers/ and bot/jobs/ take a Deps, so none of them imports
bot.app and the arrows point one way: app -> handlers/jobs -> deps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from slack_sdk import WebClient

from bot.core.workflows import Workflows
from bot.gcp.compute import Compute
from bot.jobs.runner import JobRunner
from bot.jobs.sweeper import Sweeper
from bot.observability.metrics import Metrics
from bot.settings import Settings
from storage.store import Store


@dataclass
class Deps:
    settings: Settings
    client: WebClient  # the Slack Web API client (rate limits paced: bot.slack.pacing)
    store: Store
    compute: Compute
    runner: JobRunner
    workflows: Workflows
    sweeper: Sweeper
    metrics: Metrics = field(default_factory=Metrics)  # served at /metrics (bot.web.metrics)
