"""``bot.web.wsgi:app``: the WSGI app for gunicorn (App Engine's entrypoint, see app.yaml).

It is the app ``python -m bot`` serves, built the same way (bot.service): on
import it reads the settings, sets up logging, opens and migrates the
database, and starts the background parts (job runner, Socket Mode if
configured, and whatever else bot.service starts).

Forking: gunicorn imports this module in its worker process, after the fork,
unless ``--preload`` is given. That is what the background needs: threads
exist only in the process that started them. So run one worker
(``-w 1 --threads N``; more processes would mean more schedulers and job
pools) and no ``--preload``.

A bad environment prints one line per problem. Under gunicorn the import then
fails as an app that cannot load, which stops gunicorn (exit code 4) instead
of restarting a worker that can only fail again; elsewhere it exits with 2.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NoReturn

from bot import logs, service
from bot.settings import SettingsError

if TYPE_CHECKING:
    from bot.web.server import StartResponse, WsgiApp

log = logging.getLogger(__name__)


def load() -> WsgiApp:
    """Build the bot, start its background in this process, and return its WSGI app."""
    try:
        bot = service.build()
        background = service.start_background(bot)
    except SettingsError as error:
        _fail(error)
    from bot.web.server import wsgi_app  # only now: a bad environment is reported without loading it

    if "gunicorn" in sys.modules:
        logs.adopt("gunicorn.error")  # the worker's own gunicorn lines in the same format (JSON on App Engine)
    atexit.register(background.stop)

    def forked() -> None:
        # Only with gunicorn --preload (or another fork after import): this child has the app but none
        # of its background threads, and must not share the parent's database connections.
        bot.store.engine.dispose(close=False)
        log.error(
            "bot.web.wsgi was imported before a fork (gunicorn --preload?): background work runs in the parent "
            "process only; run gunicorn without --preload"
        )

    os.register_at_fork(after_in_child=forked)
    app = wsgi_app(bot)

    def answering(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        # gunicorn does not tell the job runner about requests as bot.web.pooled_server does. Only Slack's:
        # an API `?wait=` long poll would hold every job for max_defer (the pooled server notices it stall).
        if environ.get("PATH_INFO") != "/slack/events":
            return app(environ, start_response)
        with bot.runner.answering():
            return app(environ, start_response)

    return answering


def _fail(error: SettingsError) -> NoReturn:
    service.report(error)
    gunicorn_errors = sys.modules.get("gunicorn.errors")
    if gunicorn_errors is not None:
        raise gunicorn_errors.AppImportError("vmbot cannot start: fix the settings above and deploy again")
    raise SystemExit(2)


app = load()
