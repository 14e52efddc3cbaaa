"""Staying within Slack's rate limits.

Two rules, from Slack's rate-limit documentation:

* Any Slack endpoint may answer HTTP 429 with ``Retry-After`` seconds. Every
  HTTP client the bot uses towards Slack (the Web API client, the response_url
  webhooks, and Bolt's ``respond``) therefore carries slack_sdk's
  ``RateLimitErrorRetryHandler``, which waits that long and tries again.
* ``chat.postMessage`` allows about one message per second per channel, with
  short bursts. When a whole team runs operations in one channel, retrying
  alone would stretch every thread and eventually give up on messages, so
  ``ChannelPacer`` keeps the bot's own posts to that budget: the messages a
  thread cannot do without (its root and its result) wait for their turn, and a
  step that finds the channel's budget spent is shown by updating the thread
  root instead (``chat.update`` is not limited per channel).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from ssl import SSLContext
from typing import Any

from slack_bolt import BoltContext, Respond
from slack_sdk import WebClient
from slack_sdk.http_retry import RetryHandler
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.webhook import WebhookClient, WebhookResponse

PASSING_FAILURE_RETRIES = 2  # a Slack 5xx or a dropped connection is retried this often, with back-off
RATE_LIMIT_RETRIES = 5  # a 429 is retried this many times (after Retry-After each time) before a call gives up
# Posts a quiet channel may take at once before pacing starts. Slack allows "short bursts" over
# one message per second per channel without saying how many; it counts a post when it arrives,
# and ours arrive with some jitter after we count them. Two, with one message per second,
# keeps a post of headroom under a burst of three, so the jitter does not turn into 429s.
CHANNEL_BURST = 2


def retry_handlers() -> list[RetryHandler]:
    """A dropped connection and a Slack 5xx, retried with back-off, plus 429 + Retry-After."""
    return [*passing_failure_handlers(), RateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES)]


def passing_failure_handlers() -> list[RetryHandler]:
    """slack_sdk's handlers for failures that pass: a dropped connection, a 500 or 503 (back-off 0.5 s, 1 s).

    What still fails after them is tried again later from the channel's queue (bot.slack.outbox).
    """
    return [
        ConnectionErrorRetryHandler(max_retry_count=PASSING_FAILURE_RETRIES),
        ServerErrorRetryHandler(max_retry_count=PASSING_FAILURE_RETRIES),
    ]


def retry_rate_limits(client: WebClient, pacer: ChannelPacer | None = None) -> WebClient:
    """Make ``client`` honour 429 + Retry-After and retry 5xx and dropped connections (once; a client
    passed in by a caller may lack them).

    With a ``pacer``, a 429 on ``chat.postMessage`` is retried in its channel's
    queue (``PacedRateLimitRetry``) rather than on its own.
    """
    passing = (ConnectionErrorRetryHandler, ServerErrorRetryHandler, RateLimitErrorRetryHandler)
    others = [handler for handler in client.retry_handlers if not isinstance(handler, passing)]
    others += passing_failure_handlers()
    if pacer is not None:
        client.retry_handlers = [*others, PacedRateLimitRetry(pacer)]
    else:
        client.retry_handlers = [*others, RateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES)]
    return client


class PacedRateLimitRetry(RateLimitErrorRetryHandler):
    """slack_sdk's 429 handling, except that a ``chat.postMessage`` that met a 429 takes a new turn
    in its channel's queue (after Retry-After) instead of retrying on its own.

    A 429 means Slack found the channel's budget spent although the pacer did
    not (posts arrive a little after they are counted). Retrying on its own,
    the post would meet the posts already queued for their turns, and could
    lose to them every time until its retries ran out; queued, it goes next.
    """

    def __init__(self, pacer: ChannelPacer, max_retry_count: int = RATE_LIMIT_RETRIES) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.pacer = pacer

    def prepare_for_next_attempt(self, *, state: Any, request: Any, response: Any = None, error: Any = None) -> None:
        channel = _posted_channel(request)
        if response is None or response.status_code != 429 or channel is None or self.pacer.per_second is None:
            super().prepare_for_next_attempt(state=state, request=request, response=response, error=error)
            return
        state.next_attempt_requested = True
        self.pacer.spent(channel)
        self.pacer.sleep(_retry_after(response))
        self.pacer.wait_to_post(channel)
        state.increment_current_attempt()


def _posted_channel(request: Any) -> str | None:
    """The channel of a chat.postMessage request (slack_sdk sends its arguments as a JSON body)."""
    if not str(request.url).endswith("/chat.postMessage"):
        return None
    fields = request.body_params
    if not isinstance(fields, dict):
        try:
            fields = json.loads(request.data or b"")
        except ValueError:
            return None
    channel = fields.get("channel") if isinstance(fields, dict) else None
    return str(channel) if channel else None


def _retry_after(response: Any) -> float:
    for name, values in response.headers.items():
        if name.lower() == "retry-after" and values:
            try:
                return float(values[0] if isinstance(values, list) else values)
            except ValueError:
                break
    return 1.0


def webhook_client(url: str, *, proxy: str | None = None, ssl: SSLContext | None = None) -> WebhookClient:
    """A client for one response_url that honours 429 + Retry-After."""
    return WebhookClient(url, proxy=proxy, ssl=ssl, retry_handlers=retry_handlers())


class PoliteRespond(Respond):
    """Bolt's ``respond()``, through a WebhookClient that retries 429s (Bolt's own client does not)."""

    def __call__(self, text: str | dict[str, Any] = "", **fields: Any) -> WebhookResponse:  # type: ignore[override]
        if self.response_url is None:
            raise ValueError("respond is unsupported here as there is no response_url")
        message = dict(text) if isinstance(text, dict) else {"text": text, **fields}
        body = {key: value for key, value in message.items() if value is not None}
        return webhook_client(self.response_url, proxy=self.proxy, ssl=self.ssl).send_dict(body)


def polite_respond(context: BoltContext, next: Callable[[], None]) -> None:  # noqa: A002 - Bolt's argument name
    """Global Bolt middleware: the ``respond`` every listener receives retries 429s."""
    if context.response_url:
        context["respond"] = PoliteRespond(
            response_url=context.response_url, proxy=context.client.proxy, ssl=context.client.ssl
        )
    next()


class ChannelPacer:
    """Each channel's ``chat.postMessage`` budget: a token bucket of ``burst`` posts refilled at ``per_second``.

    One pacer serves the whole process (every operation's thread), so
    operations in the same channel share its budget. ``per_second=None``
    turns pacing off. ``clock`` and ``sleep`` are injectable so a test can run
    Slack's one-second budget on a faster clock.
    """

    def __init__(
        self,
        per_second: float | None = 1.0,
        *,
        burst: int = CHANNEL_BURST,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.per_second, self.burst = per_second, burst
        self.clock, self.sleep = clock, sleep
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # channel -> (tokens, when counted)

    def try_post(self, channel: str) -> bool:
        """Take a post from the budget if one is there right now (False: the channel is busy)."""
        if self.per_second is None:
            return True
        with self._lock:
            tokens, now = self._tokens(channel)
            if tokens < 1:
                return False
            self._buckets[channel] = (tokens - 1, now)
            return True

    def wait_to_post(self, channel: str) -> None:
        """Reserve the channel's next post and sleep until it is due.

        Reservations queue up: the bucket goes negative, and each caller waits
        until the tokens it was promised have refilled, so waiting posts are
        spread one per 1/per_second seconds, in the order they asked.
        """
        if self.per_second is None:
            return
        with self._lock:
            tokens, now = self._tokens(channel)
            tokens -= 1
            self._buckets[channel] = (tokens, now)
        if tokens < 0:
            self.sleep(-tokens / self.per_second)

    def spent(self, channel: str) -> None:
        """Slack says the channel's budget is spent (a 429): count it so, whatever we had counted."""
        if self.per_second is None:
            return
        with self._lock:
            tokens, now = self._tokens(channel)
            self._buckets[channel] = (min(tokens, 0.0), now)

    def _tokens(self, channel: str) -> tuple[float, float]:
        assert self.per_second is not None
        now = self.clock()
        tokens, counted = self._buckets.get(channel, (float(self.burst), now))
        return min(float(self.burst), tokens + (now - counted) * self.per_second), now
