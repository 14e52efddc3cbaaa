"""Connect an app's parts to its Metrics: ``instrument(bot)`` is create_app's one line for it."""

from __future__ import annotations

from bot.deps import Deps
from bot.slack.call_metrics import count_calls


def instrument(bot: Deps) -> None:
    """Every hook counts into ``bot.metrics`` (bot.observability.metrics), which /metrics serves."""
    metrics = bot.metrics
    bot.compute.metrics = metrics
    bot.workflows.metrics = metrics
    bot.sweeper.metrics = metrics
    count_calls(bot.client, metrics)
    metrics.watch_queue(lambda: jobs_pending(bot))


def jobs_pending(bot: Deps) -> int:
    """Jobs submitted to the runner and not ended (queued, held back or running)."""
    return bot.runner.pending()
