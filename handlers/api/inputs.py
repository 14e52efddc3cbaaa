"""What a view reads of its request: the running bot, the caller, the body and query as models.

The body is read once, before the view (handlers.api reads it after authenticating, so an
unauthenticated caller cannot make the bot read 16 KiB), and parsed here with pydantic_core's
JSON parser: its recursion limit answers ``[[[[...`` as invalid JSON, where ``json.loads``
raises RecursionError.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import pydantic_core
from flask import current_app, g, request
from pydantic import BaseModel, ValidationError

from handlers.api.errors import ApiError, invalid
from handlers.api.models import PathName

if TYPE_CHECKING:
    from bot.deps import Deps

Model = TypeVar("Model", bound=BaseModel)
DEPS_KEY = "vmbot.deps"


def deps() -> Deps:
    return current_app.extensions[DEPS_KEY]


def actor() -> str:
    """The authenticated caller's name (the token's name in VMBOT_API_TOKENS)."""
    return g.actor


def raw_body() -> bytes:
    return g.get("raw_body", b"")


def parse_json(raw: bytes) -> object:
    """The body as JSON; empty means {}; not JSON (or nested past the parser's limit) is invalid_json."""
    if not raw.strip():
        return {}
    try:
        return pydantic_core.from_json(raw)
    except ValueError:
        raise ApiError("invalid_json", "The body is not valid JSON; send a JSON object.") from None


def body(model: type[Model]) -> Model:
    try:
        return model.model_validate(parse_json(raw_body()))
    except ValidationError as error:
        raise invalid(error, model) from None


def query(model: type[Model]) -> Model:
    """The query string as ``model``; a parameter given twice counts with its last value."""
    try:
        return model.model_validate(dict(request.args.items(multi=True)))
    except ValidationError as error:
        raise invalid(error, model, query=True) from None


def vm_name(name: str) -> str:
    """A VM name from the path, by GCP's rule."""
    try:
        return PathName.model_validate({"name": name}).name
    except ValidationError as error:
        raise invalid(error, PathName) from None
