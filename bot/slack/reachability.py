"""Whether Slack answers: checked lazily, after start-up, and retried, so the bot starts without Slack.

Bolt checks the token with ``auth.test`` when the App is built, and raises if
Slack cannot be reached: a deploy during a Slack incident would take the bot
down and leave its GCP work unresumed. bot.app builds the App with
``token_verification_enabled=False``; ``SlackReachability.watch`` makes the
same check in a background thread until Slack answers, and every call the
outbox makes tells it whether Slack answered. ``/healthz`` reads ``state``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from bot.slack.outbox import is_passing

log = logging.getLogger(__name__)


class SlackReachability:
    """``state``: "unchecked" until the first answer (or failure), then "reachable" or "unreachable"."""

    FIRST_TRY_TIMEOUT = 3.0  # seconds the check at start-up may take: it must not hold start-up up

    def __init__(
        self, client: WebClient, *, max_pause: float = 30.0, on_token: Callable[[SlackResponse], None] | None = None
    ) -> None:
        """``on_token`` gets the first ``auth.test`` answer (Bolt's authorization reuses it)."""
        self.client, self.max_pause = client, max_pause
        self.on_token = on_token or (lambda response: None)
        self.state = "unchecked"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def note(self, answered: bool) -> None:
        new = "reachable" if answered else "unreachable"
        if new != self.state:
            (log.info if answered else log.warning)("Slack is %s", new)
        self.state = new

    def first_try(self) -> bool:
        """One quick ``auth.test`` at start-up, without retries; whatever happens, start-up goes on."""
        quick = WebClient(token=self.client.token, base_url=self.client.base_url, timeout=int(self.FIRST_TRY_TIMEOUT),
                          retry_handlers=[])  # fmt: skip
        return self.check(quick)

    def check(self, client: WebClient | None = None) -> bool:
        """One ``auth.test``; a token Slack refuses is logged as the configuration error it is."""
        try:
            response = (client or self.client).auth_test()
        except SlackApiError as error:
            if is_passing(error):
                self.note(False)
                return False
            self.note(True)  # Slack answered: it is the token that is wrong
            log.error("Slack refused SLACK_BOT_TOKEN (%s); see README > Configuration", error.response.get("error"))
            return True
        except OSError as error:
            log.warning("Slack is unreachable: %s", error)
            self.note(False)
            return False
        self.note(True)
        self.on_token(response)
        return True

    def watch(self) -> None:
        """Unless Slack has answered, check again, with a growing pause until it does, in a daemon thread."""
        if self.state == "reachable":
            return

        def loop() -> None:
            pause = 1.0
            while not self.check() and not self._stop.wait(pause):
                pause = min(pause * 2, self.max_pause)

        self._thread = threading.Thread(target=loop, daemon=True, name="vmbot-slack-check")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
