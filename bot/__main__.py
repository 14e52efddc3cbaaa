"""``vmbot`` (``python -m bot``): serve the bot, try it against local stand-ins, or migrate its database.

``vmbot serve`` is what bare ``vmbot``/``python -m bot`` does, and what every deployment runs
(app.yaml's entrypoint, the Dockerfile's command): one server code path, bot.web.server.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING

from bot import __version__, service
from bot.settings import SettingsError

if TYPE_CHECKING:
    from bot.app import VmBot
    from bot.web.server import HttpServer

log = logging.getLogger("bot")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="vmbot", description="A Slack bot that creates, parks and restores Compute Engine VMs."
    )
    top.add_argument("--version", action="version", version=f"vmbot {__version__}")
    commands = top.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "serve", help="serve Slack (HTTP or Socket Mode), /healthz and the HTTP API (the default)",
        description="Serve the bot on $PORT with the settings from the environment (README > Configuration).",
    )
    # The demo parses its own options (bot.demo): everything after `demo` goes to it as it is.
    commands.add_parser(
        "demo", help="try the bot in this terminal against local Slack and GCP stand-ins", add_help=False
    )
    commands.add_parser(
        "migrate", help="bring DATABASE_URL's schema to the newest version and exit",
        description="Apply the database migrations to DATABASE_URL (the bot also does it at start-up).",
    )
    return top


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["demo"]:
        from bot.demo import run_demo

        return run_demo(argv[1:])
    args = parser().parse_args(argv)  # --help, --version and usage errors (exit 2) end here
    if args.command == "migrate":
        from storage import migrate

        return migrate.main([])
    return run_server()


def run_server() -> int:
    try:
        bot = service.build()
        server = _listen(bot.settings.port, bot)
        background = service.start_background(bot)
    except SettingsError as error:
        service.report(error)
        return 2
    mode = "Socket Mode" if bot.settings.slack_app_token else "HTTP mode"
    log.info(
        "vmbot %s in %s, listening on port %s (POST /slack/events, GET /healthz)", __version__, mode, bot.settings.port
    )
    return serve(server, background)


def _listen(port: int, bot: VmBot) -> HttpServer:
    from bot.web.server import make_http_server

    try:
        return make_http_server(bot, "0.0.0.0", port)
    except OSError as error:
        bot.shutdown(wait=False)
        raise SettingsError([f"PORT={port}: cannot listen there ({error.strerror}); {service.SEE}"]) from None


def serve(server: HttpServer, background: service.Background) -> int:
    """Serve /slack/events and /healthz until SIGINT or SIGTERM (in Socket Mode too: /healthz), then stop in order."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
        background.stop()  # stops taking work and hands running operations over (bot.service)
        log.info("vmbot stopped")
    service.exit_now(0)  # job threads waiting on GCP were handed over: do not wait for them
    return 0


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Platforms stop a process with SIGTERM: leave serve_forever so the background stops in order.
    raise SystemExit(0)


if __name__ == "__main__":
    sys.exit(main())
