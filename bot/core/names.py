"""GCP's naming rules and the option values every door checks the same way (Slack's parser, the HTTP API).

A broken rule raises InvalidInput, as data; ``explain`` words it, with the
door's own way of quoting a value (Slack escapes it inside a code span).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from bot.core.errors import InvalidInput

# GCP's rule for instance, image and family names (RFC 1035 labels).
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
ZONE_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")
MACHINE_TYPE_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+){1,3}$")
PAGE_RE = re.compile(r"^[1-9][0-9]{0,3}$")
MAX_OPTION_LENGTH = 63  # GCP's limit for zone and machine-type names
NAME_RULE = "lowercase letters, digits and hyphens, starting with a letter, not ending in a hyphen, at most 63 characters"
NAMED_OPTIONS = {"image": "image name", "family": "image family name"}  # options that follow GCP's name rule


def check_name(name: str, *, what: str) -> None:
    """Raise InvalidInput unless ``name`` follows GCP's rule (fullmatch: ``$`` would let "vm\\n" through)."""
    if NAME_RE.fullmatch(name):
        return
    suggestion = name.lower() if NAME_RE.fullmatch(name.lower()) else None
    raise InvalidInput(what, name, suggestion=suggestion)


def check_option(key: str, value: str) -> None:
    """Check one option's value; the rules live here once for every door."""
    if key in NAMED_OPTIONS:
        check_name(value, what=NAMED_OPTIONS[key])
    if key == "zone" and not (len(value) <= MAX_OPTION_LENGTH and ZONE_RE.fullmatch(value)):
        raise InvalidInput("zone", value)
    if key == "machine-type" and not (len(value) <= MAX_OPTION_LENGTH and MACHINE_TYPE_RE.fullmatch(value)):
        raise InvalidInput("machine type", value)
    if key == "page" and not PAGE_RE.fullmatch(value):
        raise InvalidInput("page", value)


def explain(error: InvalidInput, quote: Callable[[str], str]) -> str:
    """What a person reads about a broken rule; ``quote`` shows a value as the door shows code."""
    if error.what == "zone":
        return f"{quote(error.value[:80])} is not a zone name; zones look like {quote('us-central1-a')}."
    if error.what == "machine type":
        return f"{quote(error.value[:80])} is not a machine type; machine types look like {quote('e2-small')}."
    if error.what == "page":
        return f"{quote('page=' + error.value[:20])} is not a page number; pages are 1, 2, 3 …"
    hint = f" Did you mean {quote(error.suggestion)}?" if error.suggestion else ""
    return f"{quote(error.value[:80])} is not a valid {error.what}: GCP allows {NAME_RULE}.{hint}"
