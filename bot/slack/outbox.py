"""Slack calls posted from a queue per channel, off the threads that do GCP work.

A workflow only says what happened (bot.slack.threads puts the call here) and
goes on with its next GCP step at once: a Slack outage, a 429 with
``Retry-After: 30`` or a slow answer waits in the channel's queue, never
between two GCP calls. A call that fails for a reason that passes (Slack 5xx,
429, a dropped connection) stays at the head of its queue and is tried again
with a growing pause (up to ``max_pause``), so what Slack missed is posted once
it answers again. While a channel is behind, the step messages of one
operation are coalesced: only its newest step still waiting is posted.

A call that fails for good (the bot is not in the channel, a bad token) is
logged and dropped, as before.

The queues are served by a small fixed pool of threads (``senders``), one call of a
channel at a time and in order: a hundred operations in a hundred channels do not
cost a hundred threads, each kept for good (which the first version, a thread per
channel, did). A channel with something to post waits in a ready line; a sender
takes it, posts its next call (trying it again while it fails for a passing
reason) and puts it back in line if more is queued, so channels take turns. A call queued
wakes one idle sender, not all of them: waking every sender for each call cost more CPU
than posting it once a hundred operations were under way (`python -m bench`, row 8).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)

MAX_PAUSE = 5.0  # seconds between two tries of a call Slack keeps failing
SENDERS = 16  # threads posting for every channel (a call waits for its channel's pace, bot.slack.pacing)


def is_passing(error: BaseException) -> bool:
    """A Slack failure that trying again later can cure: 5xx, 429, or no answer at all."""
    if isinstance(error, SlackApiError):
        status = getattr(error.response, "status_code", 200)
        return status >= 500 or status == 429
    return isinstance(error, OSError)  # URLError, a reset or refused connection, a timeout


@dataclass
class Delivery:
    """One Slack call (``send``) of one operation (``key``); ``step`` ones may be coalesced."""

    key: object
    send: Callable[[], None]
    step: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class Outbox:
    """The per-channel queues, served by ``senders`` daemon threads (started when first needed).

    ``on_answer(True/False)`` is told whether Slack answered (bot.slack.reachability).
    """

    def __init__(
        self, *, max_pause: float = MAX_PAUSE, on_answer: Callable[[bool], None] | None = None, senders: int = SENDERS
    ) -> None:
        self.max_pause = max_pause
        self.senders = senders
        self.on_answer = on_answer or (lambda answered: None)
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # senders wait here for a channel in line
        self._changed = threading.Condition(self._lock)  # drain and paused senders wait here
        self._queues: dict[str, deque[Delivery]] = {}
        self._behind: set[str] = set()  # channels whose last try failed
        self._busy: set[str] = set()
        self._sending: set[object] = set()  # keys of the deliveries being tried now
        self._ready: deque[str] = deque()  # channels with something queued and no sender on them, in turn
        self._threads: list[threading.Thread] = []
        self._stopped = False

    def put(self, channel: str, delivery: Delivery) -> Delivery:
        with self._lock:
            if self._stopped:
                delivery.done.set()  # nothing will post it: whoever waits, waits no more
                return delivery
            queue = self._queues.setdefault(channel, deque())
            queue.append(delivery)
            if len(queue) == 1 and channel not in self._busy:
                self._ready.append(channel)
                self._work.notify()
            if len(self._threads) < self.senders:
                thread = threading.Thread(target=self._deliver, daemon=True, name=f"vmbot-slack-{len(self._threads)}")
                self._threads.append(thread)
                thread.start()
        return delivery

    def pending(self, key: object) -> bool:
        """Something of operation ``key`` is still to post (queued, or being tried)."""
        with self._lock:
            return any(d.key == key for queue in self._queues.values() for d in queue) or key in self._sending

    def behind(self, channel: str) -> bool:
        """The channel's last call failed and is waiting to be tried again."""
        with self._lock:
            return channel in self._behind

    def drain(self, timeout: float) -> bool:
        """Until every queue is empty and idle (tests; a graceful stop)."""
        with self._lock:
            return self._changed.wait_for(lambda: not self._busy and not any(self._queues.values()), timeout=timeout)

    def stop(self) -> None:
        """Post nothing more: what is still queued is left to the store (``report_again`` posts results)."""
        with self._lock:
            self._stopped = True
            for queue in self._queues.values():
                for delivery in queue:
                    delivery.done.set()
                queue.clear()
            self._work.notify_all()
            self._changed.notify_all()

    def _next(self) -> tuple[str, Delivery] | None:
        """The next call to make: from the first channel in line (which is then this sender's until
        the call is done)."""
        with self._lock:
            while True:
                self._work.wait_for(lambda: self._stopped or bool(self._ready))
                if self._stopped:
                    return None
                channel = self._ready.popleft()
                queue = self._queues[channel]
                while queue:
                    delivery = queue.popleft()
                    if delivery.step and channel in self._behind and any(d.step and d.key == delivery.key for d in queue):
                        delivery.done.set()  # coalesced: a newer step of the same operation says more
                        continue
                    self._busy.add(channel)
                    self._sending.add(delivery.key)
                    return channel, delivery
                self._changed.notify_all()  # every call in it was coalesced: a drain may be over

    def _deliver(self) -> None:
        while (turn := self._next()) is not None:
            channel, delivery = turn
            pause = 0.5
            while True:
                try:
                    delivery.send()
                except Exception as error:  # noqa: BLE001 - sorted below: passing failures are tried again
                    if not is_passing(error):
                        log.warning("Slack call for %s in %s failed for good: %s", delivery.key, channel, error)
                        break
                    log.warning("Slack did not take a call for %s in %s (%s); trying again in %.1f s",
                                delivery.key, channel, error, pause)  # fmt: skip
                    self.on_answer(False)
                    with self._lock:
                        self._behind.add(channel)
                        if self._changed.wait_for(lambda: self._stopped, timeout=pause):
                            break
                    pause = min(pause * 2, self.max_pause)
                    continue
                self.on_answer(True)
                with self._lock:
                    self._behind.discard(channel)
                break
            with self._lock:
                delivery.done.set()
                self._busy.discard(channel)
                self._sending.discard(delivery.key)
                if self._queues[channel] and not self._stopped:
                    self._ready.append(channel)  # its next call, after the channels already in line
                    self._work.notify()
                self._changed.notify_all()
