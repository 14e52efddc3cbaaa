"""vmbot as a running service: the start-up steps of ``vmbot serve`` (bot.__main__).

Every deployment runs that one command (``python -m bot serve`` in app.yaml, ``vmbot serve`` in the
Dockerfile), so App Engine and Cloud Run run the very app and server a local run serves:

1. ``build()``: settings from the environment, logging, then the app (which
   opens the database and applies migrations). Anything that stops the bot
   from working comes back as one SettingsError, one line per problem.
2. ``start_background(bot)``: what runs beside request handling. It must start
   in the process that serves requests: threads do not survive a fork.
3. Serve ``bot.web.server.wsgi_app(bot)`` with waitress (``bot.web.server.make_http_server``).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bot import logs
from bot.redaction import secrets_of
from bot.settings import Settings, SettingsError

if TYPE_CHECKING:
    from bot.app import VmBot

log = logging.getLogger(__name__)
SEE = "see README > Configuration"


def build(env: Mapping[str, str] | None = None) -> VmBot:
    """Settings, logging and the app, from ``env`` (default: os.environ); SettingsError lists what is wrong."""
    settings = Settings.from_env(env)
    logs.configure(settings.log_format, settings.log_level, secrets=secrets_of(settings))
    share_malloc_arenas()
    # Imported here so a bad environment is reported before the heavy client libraries load.
    from google.auth.exceptions import DefaultCredentialsError
    from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

    from bot.app import create_app

    try:
        bot = create_app(settings)
    except DBAPIError as error:
        raise SettingsError([f"DATABASE_URL: cannot use the database: {_one_line(error.orig)}; {SEE}"]) from None
    except ArgumentError:
        # SQLAlchemy quotes the whole URL here, password included, so the message is ours.
        raise SettingsError([f"DATABASE_URL is not a database URL SQLAlchemy can open; {SEE}"]) from None
    except SQLAlchemyError as error:
        raise SettingsError([f"DATABASE_URL: cannot use the database: {_one_line(error)}; {SEE}"]) from None
    except DefaultCredentialsError:
        raise SettingsError(
            [
                "Google credentials were not found: on App Engine or GCE the service account is used; elsewhere "
                f"run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS; {SEE}"
            ]
        ) from None
    _freeze_start_up_objects()
    return bot


MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt() parameter number (malloc.h)


def share_malloc_arenas() -> None:
    """Let the bot's threads share ``MALLOC_ARENAS`` glibc malloc arenas, as ``MALLOC_ARENA_MAX=2`` would.

    By default glibc gives a thread that finds the arenas busy one of its own, up to eight per core,
    and memory freed in one arena is not reused by another: a burst of work on many threads (a
    hundred parks at once) left the bot about 4 MB larger at its peak (`python -m bench`, row 8c).
    The GIL already serialises most allocations, so sharing costs no speed. Set here, before the
    threads start, so that every way of starting the bot has it; elsewhere than glibc it does nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
    except (OSError, AttributeError):
        pass  # not glibc (musl, macOS): its allocator has no such setting


def _freeze_start_up_objects() -> None:
    """Keep what start-up loaded out of the garbage collector's full passes.

    The client libraries, the app and its settings live as long as the process,
    yet a full collection walks them all: about 100 ms on this bot, a pause
    that lands on whichever acknowledgement is running (`python -m bench`, row
    1). Frozen, they are never scanned, and a full pass costs a few ms.
    """
    gc.collect()  # garbage from start-up goes now, not into the frozen set
    gc.freeze()


def report(error: SettingsError) -> None:
    """Print each problem on its own line on stderr: what a person reads when the bot will not start."""
    for problem in error.problems:
        print(problem, file=sys.stderr)
    sys.stderr.flush()


def _one_line(error: BaseException | None) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."


@dataclass
class Background:
    """What runs beside request handling; ``stop()`` ends it all, newest part first."""

    stops: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        while self.stops:
            stop = self.stops.pop()
            try:
                stop()
            except Exception:  # noqa: BLE001 - one part failing to stop must not keep the others running
                log.exception("a background part did not stop cleanly")


def stop_and_hand_over(bot: VmBot) -> None:
    """A graceful stop (SIGTERM): take no new work (the resumer, the scheduler, the job queue stop;
    queued jobs are cancelled), then release the leases of the operations still running here, so
    another process carries them on at once from the GCP operations their steps recorded. The
    workflows still running here stop at their next write (they no longer hold the lease)."""
    bot.shutdown(wait=False)
    bot.resumer.hand_over()


def exit_now(code: int = 0) -> None:
    """Leave the process at once, after ``Background.stop()``: the job threads may be waiting on a
    GCP operation for minutes, and Python's normal exit would wait for them. What they were doing
    is handed over (``stop_and_hand_over``), so nothing is lost by not waiting."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def start_background(bot: VmBot) -> Background:
    """Start the background parts in this process: the one place they start (the demo starts its own).

    - The job runner's threads start with the first job, in the process that
      submits it; stopping cancels queued jobs and hands the running ones over
      (``stop_and_hand_over``): call ``exit_now()`` after ``Background.stop()``.
    - Socket Mode, when SLACK_APP_TOKEN is set: a websocket to Slack, its own threads.
    - The periodic jobs (bot.jobs.scheduler: the image sweep): ``bot.start()``;
      ``bot.shutdown`` stops them with the rest.
    - The resumption of unfinished operations belongs here too: start it below
      and append its stop function.
    """
    background = Background()
    background.stops.append(lambda: stop_and_hand_over(bot))
    bot.start()
    if bot.settings.slack_app_token:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        from slack_sdk.errors import SlackApiError

        handler = SocketModeHandler(bot.app, bot.settings.slack_app_token)
        try:
            handler.connect()
        except SlackApiError as error:
            background.stop()
            refusal = error.response.get("error", "refused")
            raise SettingsError([f"SLACK_APP_TOKEN: Slack refused the Socket Mode connection ({refusal}); {SEE}"]) from None
        background.stops.append(handler.close)
        log.info("connected to Slack in Socket Mode")
    return background
