"""Counting Slack Web API requests and their failures, from inside slack_sdk's retry loop.

slack_sdk asks its retry handlers about every answer, good or bad (when it has any handlers,
and the bot's clients always do: bot.slack.pacing), in list order, until one retries. A handler
at the head of the list that never retries therefore sees every attempt, retries included,
without wrapping or subclassing the client a caller passed in.
"""

from __future__ import annotations

from typing import Any

from slack_sdk import WebClient
from slack_sdk.http_retry import RetryHandler, RetryState

from bot.observability.metrics import Metrics


class SlackCallCounter(RetryHandler):
    """Counts each attempt into ``metrics`` (bot.observability.metrics); never asks for a retry."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(max_retry_count=0)
        self.metrics = metrics

    def can_retry(self, *, state: RetryState, request: Any, response: Any = None, error: Any = None) -> bool:
        method = str(request.url).split("?", 1)[0].rsplit("/", 1)[-1] or "?"
        self.metrics.slack_call(method, _error_kind(response, error))
        return False


def _error_kind(response: Any, error: Any) -> str | None:
    """None for ``{"ok": true}``; else Slack's error code, ``ratelimited``, ``http_5xx`` or ``connection``."""
    if response is None:
        return "connection" if error is not None else None
    status = int(response.status_code)
    if status == 429:
        return "ratelimited"
    if status >= 500:
        return f"http_{status}"
    body = response.body if isinstance(response.body, dict) else {}
    if status != 200:
        return str(body.get("error") or f"http_{status}")
    if body.get("ok") is False:
        return str(body.get("error") or "not_ok")[:60]
    return None


def count_calls(client: WebClient, metrics: Metrics) -> None:
    """Put a counter at the head of ``client``'s retry handlers (replacing one put there before)."""
    others = [handler for handler in client.retry_handlers if not isinstance(handler, SlackCallCounter)]
    client.retry_handlers = [SlackCallCounter(metrics), *others]
