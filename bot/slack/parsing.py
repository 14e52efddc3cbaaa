"""Turns the text after ``/vm`` into a Command, strictly.

The SUBCOMMANDS table is also the help text. Anything that does not fit it is a
UsageError whose message tells the person what to type instead.
"""

from __future__ import annotations

import difflib
import shlex
from dataclasses import dataclass, field

from bot.core.errors import InvalidInput, UsageError
from bot.core.names import NAME_RE, check_create_options, check_name, check_option, explain
from bot.core.schedules import SCHEDULE_OPTIONS
from bot.slack.text import code, escape

MAX_TEXT_LENGTH = 300
LIST_STATES = ("running", "parked", "stopped", "suspended", "creating", "deleted")  # `/vm list parked`: VmState values


@dataclass(frozen=True)
class Subcommand:
    usage: str
    summary: str
    takes_name: bool = False
    options: frozenset[str] = frozenset()
    flags: frozenset[str] = frozenset()  # bare words it accepts, such as "dry-run"
    value_option: str | None = None  # a second bare word is this option's value: `/vm ttl NAME 8h` is ttl=8h


SUBCOMMANDS: dict[str, Subcommand] = {
    "create": Subcommand(
        "create NAME [zone=ZONE] [machine-type=TYPE] [image-project=P image-family=F | image=I] [disk-size=GB] "
        "[disk-type=pd-balanced|pd-ssd|pd-standard] [spot=yes] [network=N] [subnet=S] [tags=a,b] [service-account=EMAIL] "
        "[ttl=8h]",
        "create a VM that runs the startup script's web server; with `ttl=` it is parked when that time is up",
        takes_name=True,
        options=frozenset({"zone", "machine-type", "image-project", "image-family", "image", "disk-size", "disk-type",
                           "spot", "network", "subnet", "tags", "service-account", "ttl"}),  # fmt: skip
    ),
    "park": Subcommand(
        "park NAME [image=IMAGE] [family=FAMILY]",
        "stop the VM, keep an image of its disk (named IMAGE, in FAMILY), delete it (asks first)",
        takes_name=True,
        options=frozenset({"image", "family"}),
    ),
    "restore": Subcommand(
        "restore NAME [machine-type=TYPE]",
        "recreate a parked VM from its newest images, in the shape it had (another machine type if asked)",
        takes_name=True,
        options=frozenset({"machine-type"}),
    ),
    "adopt": Subcommand(
        "adopt NAME [zone=ZONE] [owner=USER] [family=FAMILY]",
        "take a VM made outside vmbot under management (labels it, records its shape; owner= is for admins)",
        takes_name=True,
        options=frozenset({"zone", "owner", "family"}),
    ),
    "delete": Subcommand(
        "delete NAME",
        "delete the VM and its boot disk for good; its images are swept after the grace period (asks first)",
        takes_name=True,
    ),
    "stop": Subcommand(
        "stop NAME", "stop the VM, keeping its disk: cheap to come back, the disk is still paid (asks first)",
        takes_name=True,
    ),
    "start": Subcommand("start NAME", "start a stopped VM again", takes_name=True),
    "suspend": Subcommand(
        "suspend NAME", "suspend the VM, keeping its memory; GCP refuses some machines, e.g. with GPUs (asks first)",
        takes_name=True,
    ),
    "resume": Subcommand("resume NAME", "resume a suspended VM", takes_name=True),
    "schedule": Subcommand(
        "schedule NAME [park-at=HH:MM|stop-at=HH:MM|suspend-at=HH:MM] "
        "[restore-at=HH:MM|start-at=HH:MM|resume-at=HH:MM] [days=mon-fri] [tz=Area/City] [skip=YYYY-MM-DD,...] | off",
        "park (or stop, suspend) and bring back a VM on a schedule; the owner is warned first. `off` removes it",
        takes_name=True,
        options=SCHEDULE_OPTIONS,
        flags=frozenset({"off"}),
    ),
    "schedules": Subcommand("schedules", "every schedule, with its next action and when, in its zone"),
    "ttl": Subcommand(
        "ttl NAME 8h|off", "park the VM when this time is up (warned first, like a schedule); `off` removes it",
        takes_name=True, options=frozenset({"ttl"}), value_option="ttl",
    ),
    "savings": Subcommand("savings", "what parking and stopping saved so far, per VM and in total (list prices)"),
    "list": Subcommand(
        "list [mine] [running|parked|stopped|suspended|creating|deleted] [page=N]",
        "the VMs I manage, with state, owner and newest image, 50 a page; `mine` and a state narrow it",
        options=frozenset({"page"}),
        flags=frozenset({"mine", *LIST_STATES}),
    ),
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
    if spec.value_option and spec.takes_name and len(positional) == 2 and "=" not in args[-1]:
        args = [*args[:-1], f"{spec.value_option}={args[-1]}"]
        words, positional = words[:-1], positional[:-1]
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
    try:
        if name is not None:
            check_name(name, what="VM name")
        for key, value in options.items():
            check_option(key, value)
        if verb == "create":
            check_create_options(options)
    except InvalidInput as invalid:
        raise UsageError(explain(invalid, code)) from None
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


def _unknown_verb(word: str) -> str:
    close = difflib.get_close_matches(word.lower(), SUBCOMMANDS, n=1)
    hint = f" Did you mean `/vm {close[0]}`?" if close else ""
    return f"I don't know `/vm {escape(word[:40])}`.{hint} `/vm help` lists what I can do."
