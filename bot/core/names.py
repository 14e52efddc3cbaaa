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
NAMED_OPTIONS = {  # options that follow GCP's name rule
    "image": "image name", "family": "image family name", "image-family": "image family name",
    "network": "network name", "subnet": "subnetwork name",
}  # fmt: skip
# GCP's project id rule: 6 to 30 characters, lowercase letters, digits and hyphens, starting with a letter.
PROJECT_RE = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
# A service account's email: NAME@PROJECT.iam.gserviceaccount.com, or the Compute default NUMBER-compute@developer….
SERVICE_ACCOUNT_RE = re.compile(
    r"^(?:[a-z][-a-z0-9]{4,28}[a-z0-9]@[a-z][-a-z0-9]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com"
    r"|[0-9]{6,20}-compute@developer\.gserviceaccount\.com|default)$"
)
SLACK_USER_RE = re.compile(r"^[UW][A-Z0-9]{2,20}$")
DISK_TYPES = ("pd-balanced", "pd-ssd", "pd-standard")
DISK_SIZE_GB = (10, 65536)  # GCP's bounds for a persistent boot disk vmbot makes
MAX_TAGS = 64  # GCP's limit of network tags per instance
YES_NO = {"yes": True, "no": False}


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
    if key == "image-project" and not PROJECT_RE.fullmatch(value):
        raise InvalidInput("project id", value)
    if key == "disk-size" and not (value.isascii() and value.isdigit() and DISK_SIZE_GB[0] <= int(value) <= DISK_SIZE_GB[1]):
        raise InvalidInput("disk size", value)
    if key == "disk-type" and value not in DISK_TYPES:
        raise InvalidInput("disk type", value)
    if key == "spot" and value not in YES_NO:
        raise InvalidInput("yes or no", value)
    if key == "tags":
        tags = value.split(",")
        if len(tags) > MAX_TAGS:
            raise InvalidInput("list of network tags", value)
        for tag in tags:
            check_name(tag, what="network tag")
    if key == "service-account" and not SERVICE_ACCOUNT_RE.fullmatch(value):
        raise InvalidInput("service account", value)
    if key == "owner" and not SLACK_USER_RE.fullmatch(value):
        raise InvalidInput("Slack user id", value)


def check_create_options(options: dict[str, str]) -> None:
    """Rules between options of a create: one image source, and a project only with an image to take from it."""
    if "image" in options and "image-family" in options:
        raise InvalidInput("image choice", "image= and image-family=")
    if "image-project" in options and not ({"image", "image-family"} & set(options)):
        raise InvalidInput("image choice", "image-project= without image= or image-family=")


def explain(error: InvalidInput, quote: Callable[[str], str]) -> str:
    """What a person reads about a broken rule; ``quote`` shows a value as the door shows code."""
    if error.what == "zone":
        return f"{quote(error.value[:80])} is not a zone name; zones look like {quote('us-central1-a')}."
    if error.what == "machine type":
        return f"{quote(error.value[:80])} is not a machine type; machine types look like {quote('e2-small')}."
    if error.what == "project id":
        return f"{quote(error.value[:80])} is not a project id; GCP allows 6 to 30 lowercase letters, digits and hyphens, starting with a letter (like {quote('debian-cloud')})."
    if error.what == "disk size":
        return f"{quote(error.value[:20])} is not a disk size; give whole GB from {DISK_SIZE_GB[0]} to {DISK_SIZE_GB[1]}, like {quote('disk-size=50')}."
    if error.what == "disk type":
        return f"{quote(error.value[:40])} is not a disk type I make; use one of {', '.join(quote(t) for t in DISK_TYPES)}."
    if error.what == "yes or no":
        return f"{quote(error.value[:20])} is not {quote('yes')} or {quote('no')}."
    if error.what == "list of network tags":
        return f"That is more than {MAX_TAGS} network tags; GCP allows at most {MAX_TAGS}."
    if error.what == "service account":
        return (f"{quote(error.value[:80])} is not a service account; give its email, like "
                f"{quote('runner@my-project.iam.gserviceaccount.com')}, or {quote('default')}.")
    if error.what == "Slack user id":
        return f"{quote(error.value[:40])} is not a Slack user id; they look like {quote('U012AB3CD')}."
    if error.what == "image choice":
        if error.value.startswith("image-project"):
            return f"{quote('image-project=')} needs {quote('image-family=')} or {quote('image=')} to say which image to take from it."
        return f"Give {quote('image-family=')} or {quote('image=')}, not both."
    if error.what == "page":
        return f"{quote('page=' + error.value[:20])} is not a page number; pages are 1, 2, 3 …"
    hint = f" Did you mean {quote(error.suggestion)}?" if error.suggestion else ""
    return f"{quote(error.value[:80])} is not a valid {error.what}: GCP allows {NAME_RULE}.{hint}"
