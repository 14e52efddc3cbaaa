"""How an operation tells people what is happening: a Slack thread, or nothing.

A Slack outage must never leave a VM half-parked or hold up its GCP steps, so
SlackThread hands every call to a queue per channel (bot.slack.outbox), which
tries a failed call again once Slack answers; the store holds the truth, and
`/vm status` shows it.

Slack allows about one message per second per channel (bot.slack.pacing). A
thread's root and its result always get posted, waiting for the channel's turn
if need be; a step that finds the channel busy is shown on the thread root
(chat.update) instead of as a reply, so a park never costs more than six Web
API calls.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError

from bot.core.errors import UserError
from bot.core.progress import Progress
from bot.slack import blocks
from bot.slack.refusals import slack_text
from bot.slack.text import is_slack_user
from bot.slack.outbox import Delivery, Outbox, is_passing
from bot.slack.pacing import ChannelPacer, webhook_client
from storage.models import Operation
from storage.store import Store

if TYPE_CHECKING:
    from bot.jobs.sweeper import SweepReport

log = logging.getLogger(__name__)

# What chat.postMessage answers where the bot is not a member: a public channel (the bot has no
# chat:write.public), or a private one it cannot even see.
NOT_A_MEMBER = frozenset({"not_in_channel", "channel_not_found"})


class SlackThread:
    """One operation's thread: a root message in the channel, a reply per step, the root updated at the end.

    Each call goes through the channel's Outbox (bot.slack.outbox), in order, so
    the workflow never waits on Slack between its GCP steps; without an outbox
    (a test of the messages themselves) each call is made at once. A root Slack
    has not taken yet keeps the operation "not yet reported": its result is
    recorded as posted (``store.reported``) only once it is, so the resumer posts
    the thread and its result if this process stops first (``Workflows.report_again``).
    """

    def __init__(
        self, client: WebClient, store: Store, op: Operation, pacer: ChannelPacer | None = None,
        outbox: Outbox | None = None,
    ) -> None:  # fmt: skip
        self.client, self.store, self.op = client, store, op
        self.pacer = pacer or ChannelPacer(None)
        self.outbox = outbox
        self.channel, self.thread_ts = op.channel, op.thread_ts
        self.detail = ""
        self.gave_up = False  # the root cannot be posted at all (e.g. the bot is not in the channel)

    def started(self, detail: str) -> None:
        """Post the thread root, once: an operation resumed after a restart keeps its thread."""
        self.detail = detail
        self._send(self._post_root)

    def step(self, text: str) -> None:
        self._send(lambda: self._post_step(text), step=True)

    def queued(self, ahead: int, slots: int) -> None:
        """Start the thread by saying the operation waits for a slot (bot.jobs.runner ``on_queued``);
        its ``started`` then turns that root into the usual one."""
        self._send(lambda: self._post_queued(ahead, slots))

    def finished(self, *, ok: bool, headline: str, detail: str, took: float, retry: bool = True) -> None:
        """Queue the result; the workflow does not wait for it: in a busy channel (Slack's pace, 1 message
        a second) that wait held an operation thread for seconds, and other operations' GCP steps behind it
        (`python -m bench`, row 8b). Until Slack has taken it the operation counts as not reported, and
        the resumer posts it if this process stops first."""
        self._send(lambda: self._post_result(ok=ok, headline=headline, detail=detail, took=took, retry=retry))

    def refused(self, refusal: UserError) -> None:
        """Tell only the person who asked (the operation was refused before its thread began).

        A script (HTTP API) has no Slack user to whisper to: its refusal goes to the channel it notifies.
        """
        text = slack_text(refusal)
        if not is_slack_user(self.op.requested_by):
            message = blocks.operation_refused(self.op, text)
            self._send(lambda: self._call(self.client.chat_postMessage, channel=self.channel, **message.as_kwargs()))
        else:
            self._send(lambda: self._whisper(text))

    # ---- the calls, as the outbox makes them (in order, on the channel's thread) ----------------

    def _send(self, send, *, step: bool = False) -> Delivery | None:  # type: ignore[no-untyped-def]
        if self.outbox is None:
            try:
                send()
            except (SlackApiError, SlackRequestError, OSError) as exc:
                log.warning("Slack call failed for operation %s: %s", self.op.id, exc)
            return None
        return self.outbox.put(self.channel or "", Delivery(self.op.id, send, step=step))

    def _post_queued(self, ahead: int, slots: int) -> None:
        if self.thread_ts or self.gave_up:
            return
        self.pacer.wait_to_post(self.channel or "")
        response = self._call(self.client.chat_postMessage, channel=self.channel,
                              **blocks.operation_queued(self.op, ahead, slots).as_kwargs())  # fmt: skip
        if response is not None:
            self.thread_ts = response["ts"]
            self.store.set_thread(self.op.id, response["channel"], response["ts"])

    def _post_root(self) -> None:
        if self.thread_ts or self.gave_up:
            return
        queued_root = self.store.thread_of(self.op.id)
        if queued_root:  # the root that said it was queued: it becomes the usual one
            self.thread_ts = queued_root
            root = blocks.operation_started(self.op, self.detail)
            self._call(self.client.chat_update, channel=self.channel, ts=self.thread_ts, **root.as_kwargs())
            return
        message = blocks.operation_started(self.op, self.detail)
        self.pacer.wait_to_post(self.channel or "")
        try:
            response = self.client.chat_postMessage(channel=self.channel, **message.as_kwargs())
        except SlackApiError as exc:
            if is_passing(exc):
                raise  # tried again from the queue
            log.warning("Slack chat_postMessage failed for operation %s: %s", self.op.id, exc)
            self.gave_up = True
            if exc.response.get("error") in NOT_A_MEMBER and is_slack_user(self.op.requested_by):
                # Slash commands work in any channel, posts only where the bot was invited (manifest.yml).
                self._whisper(blocks.invite_me(self.op))
            return
        self.thread_ts = response["ts"]
        self.store.set_thread(self.op.id, response["channel"], response["ts"])

    def _post_step(self, text: str) -> None:
        if not self.thread_ts:
            return
        if self.pacer.try_post(self.channel or ""):
            self._reply(blocks.step(text))
        else:  # the channel is busy: show the step on the thread root rather than queue a reply
            root = blocks.operation_progress(self.op, self.detail, text)
            self._call(self.client.chat_update, channel=self.channel, ts=self.thread_ts, **root.as_kwargs())

    def _post_result(self, *, ok: bool, headline: str, detail: str, took: float, retry: bool) -> None:
        if self.thread_ts:
            root = blocks.operation_finished(self.op, ok=ok, headline=headline, took=took)
            self._call(self.client.chat_update, channel=self.channel, ts=self.thread_ts, **root.as_kwargs())
            self.pacer.wait_to_post(self.channel or "")
            self._reply(blocks.operation_succeeded_reply(detail) if ok else blocks.operation_failed_reply(self.op, detail, retry=retry))
        elif not self.gave_up:
            return  # no root yet (Slack did not take it): not reported, the resumer posts it later
        self.store.reported(self.op.id)

    def _whisper(self, text: str) -> None:
        """Tell the person who asked, and only them: through the request's response_url, else ephemerally."""
        if self.op.response_url:
            try:
                webhook_client(self.op.response_url).send(text=text, response_type="ephemeral")
                return
            except (SlackRequestError, OSError) as exc:
                log.warning("could not answer through response_url for operation %s: %s", self.op.id, exc)
        self._call(self.client.chat_postEphemeral, channel=self.channel, user=self.op.requested_by, text=text)

    def _reply(self, message: blocks.Message) -> None:
        if self.thread_ts:
            self._call(self.client.chat_postMessage, channel=self.channel, thread_ts=self.thread_ts, **message.as_kwargs())

    def _call(self, method, **kwargs):  # type: ignore[no-untyped-def]
        """Make one Slack call; a failure that may pass is raised (the outbox tries again), any other logged."""
        try:
            return method(**kwargs)
        except (SlackApiError, SlackRequestError, OSError) as exc:
            if self.outbox is not None and is_passing(exc):
                raise
            log.warning("Slack %s failed for operation %s: %s", method.__name__, self.op.id, exc)
            return None


class Silent:
    """For operations nobody watches in Slack (started by a script): progress goes to the log only."""

    def __init__(self, op: Operation, store: Store | None = None) -> None:
        self.op, self.store = op, store

    def started(self, detail: str) -> None:
        log.info("operation %s started: %s", self.op.id, detail)

    def step(self, text: str) -> None:
        log.info("operation %s: %s", self.op.id, text)

    def finished(self, *, ok: bool, headline: str, detail: str, took: float, retry: bool = True) -> None:
        log.info("operation %s %s: %s", self.op.id, "succeeded" if ok else "failed", detail)
        if self.store is not None:
            self.store.reported(self.op.id)

    def refused(self, refusal: UserError) -> None:
        log.info("operation %s refused: %s", self.op.id, slack_text(refusal))


def progress_for(
    client: WebClient, store: Store, op: Operation, pacer: ChannelPacer | None = None, outbox: Outbox | None = None
) -> Progress:
    return SlackThread(client, store, op, pacer, outbox) if op.channel else Silent(op, store)


class SweepThread:
    """A sweep's report in Slack: a root message in ``channel``, the details as a reply in its thread.

    Like SlackThread, a failed Slack call is logged and the sweep's record in
    the store stays the truth.
    """

    def __init__(self, client: WebClient, channel: str) -> None:
        self.client, self.channel = client, channel
        self.thread_ts: str | None = None

    def started(self, report: SweepReport) -> None:
        response = self._call(self.client.chat_postMessage, channel=self.channel, **blocks.sweep_started(report).as_kwargs())
        if response is not None:
            self.channel, self.thread_ts = response["channel"], response["ts"]

    def finished(self, report: SweepReport) -> None:
        root = blocks.sweep_headline(report)
        if self.thread_ts:
            self._call(self.client.chat_update, channel=self.channel, ts=self.thread_ts, **root.as_kwargs())
        else:
            response = self._call(self.client.chat_postMessage, channel=self.channel, **root.as_kwargs())
            self.thread_ts = response["ts"] if response is not None else None
        if self.thread_ts:
            details = blocks.sweep_report(report)
            self._call(self.client.chat_postMessage, channel=self.channel, thread_ts=self.thread_ts, **details.as_kwargs())

    def _call(self, method, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return method(**kwargs)
        except (SlackApiError, SlackRequestError, OSError) as exc:
            log.warning("Slack %s failed for a sweep report in %s: %s", method.__name__, self.channel, exc)
            return None
