"""Turns the text after ``/vm`` into a Command, strictly.

The SUBCOMMANDS table is also the help text. Anything that does not fit it is a
UsageError whose message tells the person what to type instead.
"""

from __future__ import annotations

import difflib
import re
import shlex
from dataclasses import dataclass, field

from bot.slack.blocks import escape
from bot.core.errors import UsageError

MAX_TEXT_LENGTH = 300
# GCP's rule for instance, image and family names (RFC 1035 labels).
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
ZONE_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")
MACHINE_TYPE_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+){1,3}$")
OPTION_NAMES = {"image": "image name", "family": "image family name"}  # options that follow GCP's name rule
PAGE_RE = re.compile(r"^[1-9][0-9]{0,3}$")
MAX_OPTION_LENGTH = 63  # GCP's limit for zone and machine-type names
NAME_RULE = "lowercase letters, digits and hyphens, starting with a letter, not ending in a hyphen, at most 63 characters"


@dataclass(frozen=True)
class Subcommand:
    usage: str
    summary: str
    takes_name: bool = False
    options: frozenset[str] = frozenset()
    flags: frozenset[str] = frozenset()  # bare words it accepts, such as "dry-run"


SUBCOMMANDS: dict[str, Subcommand] = {
    "create": Subcommand(
        "create NAME [zone=ZONE] [machine-type=TYPE]",
        "create a VM that runs the startup script's web server",
        takes_name=True,
        options=frozenset({"zone", "machine-type"}),
    ),
    "park": Subcommand(
        "park NAME [image=IMAGE] [family=FAMILY]",
        "stop the VM, keep an image of its disk (named IMAGE, in FAMILY), delete it (asks first)",
        takes_name=True,
        options=frozenset({"image", "family"}),
    ),
    "restore": Subcommand("restore NAME", "recreate a parked VM from its newest image", takes_name=True),
    "delete": Subcommand(
        "delete NAME",
        "delete the VM and its boot disk for good; its images are swept after the grace period (asks first)",
        takes_name=True,
    ),
    "list": Subcommand("list", "the VMs I manage, with state, owner and newest image"),
    "status": Subcommand("status NAME", "one VM: its record, its live GCP state and its last operations", takes_name=True),
    "images": Subcommand("images NAME", "a VM's images: ready, dirty since when, deleted", takes_name=True),
    "sweep": Subcommand(
        "sweep [dry-run]",
        "delete dirty images past their grace period now, and report; `dry-run` only reports",
        flags=frozenset({"dry-run"}),
    ),
    "history": Subcommand(
        "history NAME [page=N]",
        "who asked what of a VM and what I answered, newest first",
        takes_name=True,
        options=frozenset({"page"}),
    ),
    "help": Subcommand("help", "this message"),
}


@dataclass(frozen=True)
class Command:
    verb: str
    name: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    flags: frozenset[str] = frozenset()

    def option(self, key: str, default: str) -> str:
        return self.options.get(key, default)


def parse(text: str) -> Command:
    """Parse ``/vm`` command text; raise UsageError with an actionable message."""
    if len(text) > MAX_TEXT_LENGTH:
        raise UsageError(f"That command is too long ({len(text)} characters; the limit is {MAX_TEXT_LENGTH}).")
    try:
        tokens = shlex.split(text)
    except ValueError:
        raise UsageError("I could not read that command: a quote is not closed. Try `/vm help`.") from None
    if not tokens:
        return Command("help")
    verb, args = tokens[0].lower(), tokens[1:]
    spec = SUBCOMMANDS.get(verb)
    if spec is None:
        raise UsageError(_unknown_verb(tokens[0]))
    words = [arg for arg in args if "=" not in arg]
    flags = frozenset(word.lower() for word in words if word.lower() in spec.flags)
    positional = [word for word in words if word.lower() not in spec.flags]
    pairs = [arg.split("=", 1) for arg in args if "=" in arg]
    options = dict(pairs)
    usage = f"Usage: `/vm {spec.usage}`"
    unknown = sorted(set(options) - spec.options)
    if unknown:
        allowed = ", ".join(f"`{key}=`" for key in sorted(spec.options)) or "none"
        raise UsageError(f"`/vm {verb}` has no option `{escape(unknown[0][:40])}=` (options: {allowed}). {usage}")
    if len(options) < len(pairs):
        repeated = next(key for key in options if sum(1 for k, _ in pairs if k == key) > 1)
        raise UsageError(f"`{repeated}=` is given more than once; give it once. {usage}")
    if spec.takes_name and not positional:
        raise UsageError(f"`/vm {verb}` needs a VM name. {usage}")
    if len(positional) > (1 if spec.takes_name else 0):
        raise UsageError(f"`/vm {verb}` got more than I expected (`{escape(' '.join(args)[:80])}`). {usage}")
    name = positional[0] if spec.takes_name else None
    if name is not None:
        check_name(name, what="VM name")
    for key, value in options.items():
        check_option(key, value)
    return Command(verb, name, options, flags)


def mentioned_vm(text: str) -> str | None:
    """The VM a command names, if it names a valid one, even when the rest of it is wrong.

    The audit trail files a refused or unreadable ``/vm park test-vm-22 now!``
    under ``test-vm-22``, so the VM's history shows the attempt.
    """
    try:
        tokens = shlex.split(text[:MAX_TEXT_LENGTH])
    except ValueError:
        return None
    spec = SUBCOMMANDS.get(tokens[0].lower()) if tokens else None
    names = [arg for arg in tokens[1:] if "=" not in arg]
    if spec is None or not spec.takes_name or not names or not NAME_RE.fullmatch(names[0]):
        return None
    return names[0]


def check_name(name: str, *, what: str) -> None:
    # fullmatch, not match: "$" also matches before a trailing newline, and "vm\n" is no VM name.
    if NAME_RE.fullmatch(name):
        return
    hint = f" Did you mean `{name.lower()}`?" if NAME_RE.fullmatch(name.lower()) else ""
    raise UsageError(f"`{escape(name[:80])}` is not a valid {what}: GCP allows {NAME_RULE}.{hint}")


def check_option(key: str, value: str) -> None:
    """Check one option's value (the HTTP API checks its fields here too, so the rules live in one place)."""
    if key in OPTION_NAMES:
        check_name(value, what=OPTION_NAMES[key])
    if key == "zone" and not (len(value) <= MAX_OPTION_LENGTH and ZONE_RE.fullmatch(value)):
        raise UsageError(f"`{escape(value[:80])}` is not a zone name; zones look like `us-central1-a`.")
    if key == "machine-type" and not (len(value) <= MAX_OPTION_LENGTH and MACHINE_TYPE_RE.fullmatch(value)):
        raise UsageError(f"`{escape(value[:80])}` is not a machine type; machine types look like `e2-small`.")
    if key == "page" and not PAGE_RE.fullmatch(value):
        raise UsageError(f"`page={escape(value[:20])}` is not a page number; pages are 1, 2, 3 …")


def _unknown_verb(word: str) -> str:
    close = difflib.get_close_matches(word.lower(), SUBCOMMANDS, n=1)
    hint = f" Did you mean `/vm {close[0]}`?" if close else ""
    return f"I don't know `/vm {escape(word[:40])}`.{hint} `/vm help` lists what I can do."
