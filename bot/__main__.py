"""``python -m bot`` runs the bot; ``python -m bot demo`` runs it against local stand-ins."""

from __future__ import annotations

import logging
import sys
import threading

from bot.settings import Settings, SettingsError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["demo"]:
        from bot.demo import run_demo

        return run_demo(argv[1:])
    if argv:
        print("usage: python -m bot [demo]", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return 2
    return serve(settings)


def serve(settings: Settings) -> int:
    from bot.app import create_app
    from bot.server import make_http_server

    bot = create_app(settings)
    server = make_http_server(bot, "0.0.0.0", settings.port)
    log = logging.getLogger("bot")
    if settings.slack_app_token:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        # Socket Mode: Slack reaches us over a websocket; HTTP stays up for /healthz.
        threading.Thread(target=server.serve_forever, daemon=True, name="healthz").start()
        log.info("vmbot in Socket Mode; /healthz on port %s", settings.port)
        try:
            SocketModeHandler(bot.app, settings.slack_app_token).start()
        finally:
            bot.shutdown(wait=False)
        return 0
    log.info("vmbot listening on port %s (POST /slack/events, GET /healthz)", settings.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        bot.shutdown(wait=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
