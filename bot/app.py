"""Wiring: builds the Bolt app and everything it needs, from one Settings object.

``create_app`` is a factory (no module-level App), so tests and the demo pass in
clients pointed at local stand-ins and production passes nothing.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slack_bolt import App
from slack_bolt.middleware.authorization import SingleTeamAuthorization
from slack_sdk import WebClient

from bot.deps import Deps
from bot.gcp.compute import Compute
from bot.gcp.watcher import OperationWatcher
from bot.slack.outbox import Outbox
from bot.slack.reachability import SlackReachability
from bot.slack.pacing import ChannelPacer, polite_respond, retry_rate_limits, webhook_client
from bot.slack.refusals import slack_text
from bot.slack.threads import SlackThread, progress_for
from bot.jobs.resume import Resumer
from bot.jobs.runner import JobRunner
from bot.jobs.scheduler import Scheduler, create_scheduler
from bot.settings import Settings
from bot.web.slack_guard import ReplayGuard
from bot.jobs.sweeper import Sweeper
from bot.observability.wiring import instrument
from bot.core.workflows import Workflows
from handlers import actions, commands, home, list_pages, schedule_actions, shortcuts
from storage.store import Store

log = logging.getLogger(__name__)


@dataclass
class VmBot(Deps):
    """The running bot: what handlers and jobs use (Deps), the Bolt app, and the background parts."""

    app: App = field(kw_only=True)
    resumer: Resumer = field(kw_only=True)
    outbox: Outbox = field(kw_only=True)  # Slack calls, per channel, off the workflow threads
    slack_status: SlackReachability = field(kw_only=True)
    scheduler: Scheduler = field(init=False)  # built by create_app, started by start()

    def start(self) -> None:
        """The background duties of a serving bot (``vmbot serve`` and the demo call this; tests that only
        build the app don't): resume operations a dead process left unfinished and keep this process's
        leases alive (bot.jobs.resume), reconcile the store with GCP once now, and start the periodic jobs."""
        from bot.jobs.reconcile import Reconciler

        self.slack_status.watch()
        self.resumer.start()
        self.runner.submit(Reconciler(self.store, self.compute).run)
        self.scheduler.start()

    def shutdown(self, *, wait: bool = True) -> None:
        self.slack_status.stop()
        self.outbox.stop()
        self.resumer.stop()
        self.sweeper.stop()  # a running sweep ends after its current page
        self.scheduler.shutdown(wait=wait)
        self.runner.shutdown(wait=wait)


def operation_job(workflows: Workflows) -> Callable[[Callable[..., Any], tuple[Any, ...]], int | None]:
    """Which runner jobs run an operation (``workflows.run(op_id)``, also as a partial): the runner drives
    those as ``workflows.steps(op_id)``, holding no thread while they wait on GCP, and says when one is
    queued (bot.jobs.runner)."""

    def operation_of(fn: Callable[..., Any], args: tuple[Any, ...]) -> int | None:
        if isinstance(fn, functools.partial):
            fn, args = fn.func, (*fn.args, *args)
        return int(args[0]) if fn == workflows.run and args else None

    return operation_of


def say_queued(store: Store, op_id: int, ahead: int, slots: int, progress: Callable[[Any], Any]) -> None:
    """An operation waits for a slot: its thread says so (through the outbox, off the runner)."""
    op = store.operation(op_id)
    thread = progress(op) if op is not None and op.thread_ts is None else None
    if isinstance(thread, SlackThread):
        thread.queued(ahead, slots)


def create_web_client(settings: Settings) -> WebClient:
    client = WebClient(token=settings.slack_bot_token, base_url=settings.slack_api_url or WebClient.BASE_URL)
    # Slack answers 429 with Retry-After under load; the SDK's handler waits and retries.
    return retry_rate_limits(client)


def create_app(
    settings: Settings,
    *,
    web_client: WebClient | None = None,
    compute: Compute | None = None,
    store: Store | None = None,
    pacer: ChannelPacer | None = None,
) -> VmBot:
    pacer = pacer or ChannelPacer(settings.slack_channel_rate)
    client = retry_rate_limits(web_client or create_web_client(settings), pacer)
    store = store or Store.from_url(settings.database_url)
    store.lease_seconds = settings.operation_lease
    compute = compute or Compute(
        settings.project, endpoint=settings.compute_endpoint, operation_timeout=settings.operation_timeout,
        connections=settings.max_in_flight,
    )
    runner = JobRunner(settings.workers, in_flight=settings.max_in_flight, operation_threads=settings.operation_threads,
                       watcher=OperationWatcher(compute))  # fmt: skip
    # Signature checks stay on in every mode (the demo signs its requests as Slack does);
    # the replay guard runs right after Bolt's own verification.
    # process_before_response: the listener runs on the request's own thread and Slack gets the
    # ack when it returns. Otherwise Bolt hands the listener to a pool and polls for its ack()
    # every 10 ms, which cost each command ~10 ms and a thread switch (`python -m bench`, row 1).
    # Listeners never wait on GCP or Slack before returning: that work goes on the job runner.
    # token_verification_enabled=False: Bolt would call auth.test here and raise if Slack is unreachable,
    # so a deploy during a Slack incident would not start; SlackReachability checks later, and again.
    app = App(
        client=client,
        token_verification_enabled=False,
        signing_secret=settings.slack_signing_secret,
        request_verification_enabled=True,
        before_authorize=ReplayGuard(store),
        process_before_response=True,
    )
    app.use(polite_respond)
    slack_status = SlackReachability(client, on_token=lambda response: _share_auth_test(app, response))
    slack_status.first_try()
    outbox = Outbox(on_answer=slack_status.note)
    workflows = Workflows(
        store, compute, settings, lambda op: progress_for(client, store, op, pacer, outbox), words=slack_text
    )
    runner.operation_of, runner.steps_of = operation_job(workflows), workflows.steps
    runner.on_queued = lambda op_id, ahead, slots: say_queued(store, op_id, ahead, slots,
                                                              lambda op: progress_for(client, store, op, pacer, outbox))
    sweeper = Sweeper.from_settings(store, compute, settings)
    resumer = Resumer(store, workflows, runner, reporting=outbox.pending)
    bot = VmBot(settings, client, store, compute, runner, workflows, sweeper, app=app, resumer=resumer, outbox=outbox,
                slack_status=slack_status)  # fmt: skip
    bot.scheduler = create_scheduler(bot)
    instrument(bot)  # the app's own metrics registry, fed by one hook per adapter (GET /metrics)
    commands.register(app, bot)
    actions.register(app, bot)
    home.register(app, bot)
    shortcuts.register(app, bot)
    schedule_actions.register(app, bot)
    list_pages.register(app, bot)
    app.error(listener_error_handler(runner))
    return bot


def _share_auth_test(app: App, response: Any) -> None:
    """Give Bolt's authorization the ``auth.test`` answer we got, so it does not ask again on the first request."""
    for middleware in app._middleware_list:  # Bolt has no public setter; its attribute is documented in its init
        if isinstance(middleware, SingleTeamAuthorization):
            middleware.auth_test_result = response


def listener_error_handler(runner: JobRunner) -> Callable[[Exception, dict[str, Any]], None]:
    """The one place an unexpected error in a listener is logged (with its traceback); the user gets a
    short apology through the response_url, sent from the job runner: Slack has the ack only when the
    listener's handling ends, so it must not wait on a call to Slack (create_app: process_before_response)."""

    def on_error(error: Exception, body: dict[str, Any]) -> None:  # Bolt passes arguments by these names
        reference = uuid.uuid4().hex[:8]
        user = body.get("user_id") or (body.get("user") or {}).get("id")
        log.error("unhandled error in a Slack listener (ref %s)", reference, exc_info=error, extra={"slack_user": user})
        response_url = body.get("response_url")
        if response_url:
            runner.submit(apologize, response_url, reference)

    return on_error


def apologize(response_url: str, reference: str) -> None:
    webhook_client(response_url).send(
        text=f":bangbang: Sorry, something went wrong on my side (ref `{reference}`). Nothing was changed.",
        response_type="ephemeral",
    )