"""The bot's Prometheus metrics, one small method per thing counted.

Each app has its own ``Metrics`` with its own CollectorRegistry (never prometheus_client's global
one: tests build many apps in one process, and each must count only its own). ``bot.web.metrics``
serves it as ``GET /metrics``. Adapters and jobs call one method each, from one place:

* operations: ``Workflows.run`` (bot.core.workflows), started and ended, with the duration;
* GCP: ``Compute._call`` (bot.gcp.compute), every call and every error that ends one;
* Slack: every Web API attempt (bot.slack.call_metrics, a retry handler that only watches);
* the job queue: read from the runner when scraped;
* schedules: ``schedule_run`` (for the scheduled park/restore runs);
* sweeps: ``Sweeper.sweep`` (bot.jobs.sweeper), from its report.

An object built outside ``create_app`` (a test's own Compute, say) gets a ``Metrics`` of its own
that nobody serves, so the hooks never need to ask whether metrics are on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Operations take seconds (a create) to tens of minutes (a park of a big disk).
OPERATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)


class Metrics:
    """One app's metrics (names in the README's Metrics section)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.operations_started = Counter(
            "vmbot_operations_started", "Operations this process began running (resumed ones too)", ["verb"], registry=r
        )
        self.operations_ended = Counter(
            "vmbot_operations_ended", "Operations that ended, by outcome (succeeded, failed, rejected)",
            ["verb", "outcome"], registry=r,
        )
        self.operation_seconds = Histogram(
            "vmbot_operation_duration_seconds", "From an operation's start to its end, as recorded",
            ["verb"], buckets=OPERATION_BUCKETS, registry=r,
        )
        self.gcp_calls = Counter("vmbot_gcp_calls", "Compute Engine API calls (retries inside one call not counted)",
                                 ["call"], registry=r)
        self.gcp_errors = Counter("vmbot_gcp_errors", "Compute Engine API calls that failed, by kind",
                                  ["call", "kind"], registry=r)
        self.slack_calls = Counter("vmbot_slack_calls", "Slack Web API requests, retries included", ["method"], registry=r)
        self.slack_errors = Counter("vmbot_slack_errors", "Slack Web API requests that failed, by kind",
                                    ["method", "kind"], registry=r)
        self.jobs_pending = Gauge("vmbot_jobs_pending", "Background jobs queued, held or running", registry=r)
        self.schedule_runs = Counter("vmbot_schedule_runs", "Scheduled park/restore runs, by action and outcome",
                                     ["action", "outcome"], registry=r)
        self.sweeps = Counter("vmbot_sweeps", "Image sweeps, by trigger and result (swept, skipped, dry_run)",
                              ["trigger", "result"], registry=r)
        self.sweep_images = Counter("vmbot_sweep_images", "Images a sweep deleted, found gone, failed on or kept",
                                    ["result"], registry=r)

    # ---- operations ------------------------------------------------------------------------------

    def operation_started(self, verb: str) -> None:
        self.operations_started.labels(verb).inc()

    def operation_ended(self, verb: str, outcome: str, seconds: float | None) -> None:
        self.operations_ended.labels(verb, outcome).inc()
        if seconds is not None:
            self.operation_seconds.labels(verb).observe(max(0.0, seconds))

    # ---- adapters ---------------------------------------------------------------------------------

    @contextmanager
    def gcp_call(self, call: str) -> Iterator[None]:
        """Around one Compute Engine call; an exception leaving it is counted by ``gcp_error_kind``."""
        self.gcp_calls.labels(call).inc()
        try:
            yield
        except Exception as error:
            self.gcp_errors.labels(call, gcp_error_kind(error)).inc()
            raise

    def slack_call(self, method: str, error_kind: str | None) -> None:
        self.slack_calls.labels(method).inc()
        if error_kind is not None:
            self.slack_errors.labels(method, error_kind).inc()

    def watch_queue(self, depth: Callable[[], int]) -> None:
        """``depth`` is read at every scrape."""
        self.jobs_pending.set_function(lambda: float(depth()))

    # ---- jobs ---------------------------------------------------------------------------------------

    def schedule_run(self, action: str, outcome: str) -> None:
        """One scheduled run: ``action`` park or restore, ``outcome`` e.g. started, skipped, refused, failed."""
        self.schedule_runs.labels(action, outcome).inc()

    def sweep_finished(self, report: Any) -> None:
        """From a bot.jobs.sweeper.SweepReport (not imported: the sweeper imports this module)."""
        result = "skipped" if report.skipped else "dry_run" if report.dry_run else "swept"
        self.sweeps.labels(report.trigger, result).inc()
        if result != "swept":
            return  # a dry run's images were only looked at
        for name, count in (
            ("deleted", report.deleted.count),
            ("already_gone", report.already_gone.count),
            ("failed", report.failed.count),
            ("kept", sum(tally.count for tally in report.kept.values())),
        ):
            self.sweep_images.labels(name).inc(count)


def gcp_error_kind(error: BaseException) -> str:
    """A short, bounded label: GCP's reason (notFound, rateLimitExceeded, ...), else the HTTP status, else the class."""
    reason = getattr(error, "reason", None)
    if isinstance(reason, str) and reason and len(reason) <= 40:
        return reason
    status = getattr(error, "status", None)
    if isinstance(status, int):
        return f"http_{status}"
    return type(error).__name__
