"""The HTTP API under ``/api/v1``: the Slack commands' operations, as JSON, for scripts and CI.

A Flask app (handlers.api.app.create_api) with a blueprint per resource: handlers.api.vms and
handlers.api.operations; bodies and queries are pydantic models (handlers.api.models), from
which handlers.api.openapi generates the OpenAPI document. Mutations answer ``202 Accepted``
at once with the operation and a ``Location`` to poll; ``?wait=SECONDS`` (at most
MAX_WAIT_SECONDS) holds the answer until the operation ends, woken by the workflow's own
completion signal rather than by polling the store.

Every refusal is ``{"error": {"code": ..., "message": ...}}`` with a stable code (see
handlers.api.errors.ERROR_CODES) and is decided before anything is recorded, so it changes nothing.

Auth: ``Authorization: Bearer TOKEN`` with a token from VMBOT_API_TOKENS; the token's
name is the operation's ``requested_by`` and the VM's owner when it creates one. Park
and restore follow bot.core.permissions as in Slack: the VM's owner or an admin
(VMBOT_ADMINS may name a token), else 403 ``forbidden``. Every authenticated
mutation, allowed or refused, goes into the audit trail (bot.core.audit). With no tokens configured the API is off and
every ``/api/v1`` path answers 404 ``api_disabled``. Tokens are compared in constant time
and never logged.

The package itself loads only the constants below: Flask and pydantic (about 15 MB of the
bot's memory) load with handlers.api.app, which bot.web.server imports on the first request
under ``/api/v1``, so a bot whose API nobody calls never pays for them.
"""

from handlers.api.errors import ERROR_CODES, MAX_WAIT_SECONDS, PREFIX, ApiError

__all__ = ["ERROR_CODES", "MAX_WAIT_SECONDS", "PREFIX", "ApiError"]
