"""``python -m bot`` runs the bot; ``python -m bot demo`` runs it against local stand-ins."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING

from bot import service
from bot.settings import SettingsError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from bot.app import VmBot

log = logging.getLogger("bot")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["demo"]:
        from bot.demo import run_demo

        return run_demo(argv[1:])
    if argv:
        print("usage: python -m bot [demo]", file=sys.stderr)
        return 2
    try:
        bot = service.build()
        server = _listen(bot.settings.port, bot)
        background = service.start_background(bot)
    except SettingsError as error:
        service.report(error)
        return 2
    mode = "Socket Mode" if bot.settings.slack_app_token else "HTTP mode"
    log.info("vmbot in %s, listening on port %s (POST /slack/events, GET /healthz)", mode, bot.settings.port)
    return serve(server, background)


def _listen(port: int, bot: VmBot) -> WSGIServer:
    from bot.web.server import make_http_server

    try:
        return make_http_server(bot, "0.0.0.0", port)
    except OSError as error:
        bot.shutdown(wait=False)
        raise SettingsError([f"PORT={port}: cannot listen there ({error.strerror}); {service.SEE}"]) from None


def serve(server: WSGIServer, background: service.Background) -> int:
    """Serve /slack/events and /healthz until SIGINT or SIGTERM (in Socket Mode too: /healthz), then stop in order."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()
        background.stop()
    return 0


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Platforms stop a process with SIGTERM: leave serve_forever so the background stops in order.
    raise SystemExit(0)


if __name__ == "__main__":
    sys.exit(main())
