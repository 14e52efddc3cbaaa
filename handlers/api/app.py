"""The API's Flask app (``create_api``): the blueprints, and what runs before and after every view.

handlers.api (the package) says what the API is; bot.web.server loads this module on the first
request under ``/api/v1``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from handlers.api.audited import audited
from handlers.api.errors import PREFIX, ApiError
from handlers.api.inputs import DEPS_KEY
from handlers.api.openapi import ROUTES, openapi
from handlers.api.operations import operations
from handlers.api.schedules import schedules
from handlers.api.vms import vms

if TYPE_CHECKING:
    from bot.deps import Deps

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 16 * 1024
PUBLIC_PATHS = frozenset(route.template for route in ROUTES if route.public)  # no token (the API must be on)


def create_api(bot: Deps) -> Flask:
    """The API as a WSGI app, mounted by bot.web.server for every path under ``/api/v1``."""
    app = Flask(__name__, static_folder=None)
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.json.sort_keys = False  # type: ignore[attr-defined]  # fields in the order the models give them
    app.url_map.strict_slashes = False  # /vms/ is /vms, not a redirect
    app.url_map.merge_slashes = False
    app.extensions[DEPS_KEY] = bot
    # Compare digests, not tokens: equal lengths, and hmac.compare_digest keeps the time constant.
    app.extensions["vmbot.tokens"] = [(name, _digest(token)) for name, token in bot.settings.api_tokens]
    for blueprint in (openapi, vms, operations, schedules):
        app.register_blueprint(blueprint)
    for rule in app.url_map.iter_rules():  # every mutation, allowed or refused, goes into the audit trail
        if {"POST", "PUT", "DELETE"} & set(rule.methods or ()):
            app.view_functions[rule.endpoint] = audited(app.view_functions[rule.endpoint])
    app.before_request(_before)
    app.after_request(_log)
    app.register_error_handler(ApiError, _error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _internal_error)
    return app


# ---- before every view: on, routed, authenticated, body read -------------------------------------------------


def _before() -> None:
    g.actor = "-"
    if not _tokens():
        raise ApiError("api_disabled", "The HTTP API is off on this vmbot: set VMBOT_API_TOKENS to turn it on.")
    if request.routing_exception is not None:
        return  # Flask raises it next: 404 or 405, before any token is asked for
    if request.url_rule is None or request.url_rule.rule not in PUBLIC_PATHS:
        g.actor = _authenticate(request.headers.get("Authorization", ""))
    g.raw_body = _read_body(request.environ)


def _tokens() -> list[tuple[str, bytes]]:
    return current_app.extensions["vmbot.tokens"]


def _authenticate(header: str) -> str:
    """The caller's name for a valid bearer token; every configured token is compared, in constant time."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("This API needs an 'Authorization: Bearer TOKEN' header with a token from VMBOT_API_TOKENS.")
    offered = _digest(token.strip())
    actor = None
    for name, digest in _tokens():
        if hmac.compare_digest(offered, digest):
            actor = name
    if actor is None:
        raise _unauthorized("That token is not one of this vmbot's API tokens (VMBOT_API_TOKENS).")
    return actor


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _unauthorized(message: str) -> ApiError:
    return ApiError("unauthorized", message, headers=[("WWW-Authenticate", 'Bearer realm="vmbot"')])


def _read_body(environ: dict[str, Any]) -> bytes:
    """The whole body its Content-Length announces; one that ends early is refused, not parsed in part."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY_BYTES:
        raise ApiError("payload_too_large", f"The body is {length} bytes; the limit is {MAX_BODY_BYTES}.")
    if length <= 0:
        return b""
    try:
        data = environ["wsgi.input"].read(length)
    except (OSError, ValueError):  # the client went away or stalled past the server's timeout
        data = b""
    if len(data) < length:
        raise ApiError("invalid_json", f"The body ended after {len(data)} of the {length} bytes its Content-Length announced.")
    return data


# ---- answers ----------------------------------------------------------------------------------------------


def _error(error: ApiError) -> Response:
    response = Response(json.dumps(error.body()), error.status, mimetype="application/json")
    for header, value in error.headers:
        response.headers[header] = value
    return response


def _http_error(error: HTTPException) -> Response:
    """Werkzeug's routing answers (404, 405, ...) in the API's error shape."""
    if isinstance(error, MethodNotAllowed):
        takes = [method for method in error.valid_methods or () if method not in ("HEAD", "OPTIONS")]
        return _error(ApiError(
            "method_not_allowed", f"{request.path} does not take {request.method} (it takes {', '.join(takes)}).",
            headers=[("Allow", ", ".join(takes))],
        ))
    if isinstance(error, NotFound):
        return _error(ApiError("not_found", f"There is no {request.path}; GET {PREFIX}/openapi.json describes the API."))
    return _internal_error(error)


def _internal_error(error: Exception) -> Response:
    reference = uuid.uuid4().hex[:8]
    log.error("unhandled error in %s %s (ref %s)", request.method, request.path, reference, exc_info=error)
    return _error(ApiError("internal_error", f"Something went wrong on my side (ref {reference})."))


def _log(response: Response) -> Response:
    log.info("API %s %s by %s: %s", request.method, request.path, g.get("actor", "-"), response.status_code)
    return response
