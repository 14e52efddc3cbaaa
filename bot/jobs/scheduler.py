"""The bot's periodic jobs, on one APScheduler 3 BackgroundScheduler.

``create_app`` builds the scheduler with its jobs but does not start it, so a
test can build the whole app with no scheduler thread running. ``VmBot.start()``
(called by ``python -m bot`` and the demo) starts it; ``VmBot.shutdown()`` stops
it. Nothing else touches APScheduler.

Jobs are module-level functions that take the bot and open their own store
sessions (every Store method is its own transaction). Each has an explicit id
and ``replace_existing=True``; ``max_instances=1`` and ``coalesce`` mean a slow
run is never overlapped by the next one, only delayed.

Where the blocking GCP work runs: a job runs on APScheduler's executor threads,
never on the scheduler's own loop thread, and the sweep does its GCP calls on
its own pool of ``VMBOT_SWEEP_CONCURRENCY`` threads. It does not go through the
job runner (``bot.jobs.runner``) on purpose: that pool serves people waiting in
Slack for a create, park or restore, and must not queue behind thousands of
image deletions.

Adding a job is one line in ``add_jobs``, e.g.::

    scheduler.every(settings.reconcile_interval, reconcile_job, job_id="reconcile")
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timezone
from typing import TYPE_CHECKING

from apscheduler.job import Job
from apscheduler.schedulers.background import BackgroundScheduler

from bot.jobs.reconcile import reconcile_job
from bot.jobs.schedule_runner import TICK_SECONDS, schedule_job
from bot.slack.threads import SweepThread

if TYPE_CHECKING:
    from bot.deps import Deps

log = logging.getLogger(__name__)

BotJob = Callable[["Deps"], None]


class Scheduler:
    """The one BackgroundScheduler of a bot process."""

    def __init__(self, bot: Deps) -> None:
        self.bot = bot
        self._scheduler = BackgroundScheduler(
            timezone=timezone.utc,
            # A run that is late (the process was busy or asleep) still runs, once.
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )

    def every(self, seconds: float, job: BotJob, *, job_id: str) -> None:
        """Run ``job(bot)`` every ``seconds``, the first time one interval after start."""
        self._scheduler.add_job(job, "interval", seconds=seconds, args=[self.bot], id=job_id, replace_existing=True)

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def jobs(self) -> list[Job]:
        return list(self._scheduler.get_jobs())

    def start(self) -> None:
        if not self.running:
            self._scheduler.start()
            log.info("scheduler started: %s", ", ".join(f"{job.id} ({job.trigger})" for job in self.jobs()))

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop the scheduler; with ``wait`` also wait for running jobs (they stop early when the bot stops)."""
        if self.running:
            self._scheduler.shutdown(wait=wait)


def create_scheduler(bot: Deps) -> Scheduler:
    scheduler = Scheduler(bot)
    add_jobs(scheduler, bot)
    return scheduler


def add_jobs(scheduler: Scheduler, bot: Deps) -> None:
    """Every periodic job of the bot, one line each."""
    scheduler.every(bot.settings.sweep_interval, sweep_job, job_id="sweep")
    scheduler.every(bot.settings.reconcile_interval, reconcile_job, job_id="reconcile")
    scheduler.every(TICK_SECONDS, schedule_job, job_id="schedules")


# ---- the jobs ---------------------------------------------------------------------------


def sweep_job(bot: Deps) -> None:
    """The scheduled image sweep; its report goes to VMBOT_REPORT_CHANNEL when it deleted or failed anything.

    Every process runs this on its own schedule; the sweep lease lets one of them
    sweep at a time, and ``unless_swept_within`` makes the others skip an
    interval that has been swept already.
    """
    report = bot.sweeper.sweep(trigger="scheduled", unless_swept_within=bot.settings.sweep_interval / 2)
    if report.skipped:
        log.info("scheduled sweep skipped: %s", report.skipped)
        return
    log.info(
        "sweep #%s: %d deleted, %d already gone, %d failed, %d kept, %d orphans, %.1f GB freed in %.1f s",
        report.sweep_id,
        report.deleted.count,
        report.already_gone.count,
        report.failed.count,
        sum(tally.count for tally in report.kept.values()),
        report.orphans.count,
        report.freed_gb,
        report.took,
    )
    if report.eventful and bot.settings.report_channel:
        SweepThread(bot.client, bot.settings.report_channel).finished(report)
