"""``python -m bot.cli``: vmbot's HTTP API (handlers.api) from a shell script or a CI job.

    export VMBOT_API_URL=https://vmbot.example.com VMBOT_API_TOKEN=...
    python -m bot.cli create test-vm-22 --zone us-central1-a --machine-type e2-small
    python -m bot.cli park test-vm-22 --image image-224 --family segmind-fam
    python -m bot.cli restore test-vm-22 [--machine-type e2-medium]
    python -m bot.cli stop|start|suspend|resume test-vm-22
    python -m bot.cli adopt legacy-app --zone us-central1-a
    python -m bot.cli schedule test-vm-22 --park-at 19:00 --restore-at 08:00 --days mon-fri   (--off removes it)
    python -m bot.cli schedules | ttl test-vm-22 8h|off | savings
    python -m bot.cli list
    python -m bot.cli status test-vm-22

A table (or a sentence) by default, the API's own JSON with ``--json``. A create,
park or restore waits for the operation's end, with a progress line on stderr,
unless ``--no-wait``. Exit status: 0 done; 1 the API refused the request or the
operation failed; 2 bad usage or no URL/token; 3 the API could not be reached or
did not answer JSON; 4 the operation was still running when ``--timeout`` ran out.

Standard library only, so it runs anywhere a Python 3.11 does, without the bot's dependencies.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode
from urllib.request import Request, urlopen

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_TIMEOUT = 0, 1, 2, 3, 4
PREFIX = "/api/v1"
POLL_SECONDS = 10.0  # each long poll's ?wait=: the server answers the moment the operation ends
DEFAULT_TIMEOUT = 1800.0
Json = dict[str, Any]


class CliError(Exception):
    def __init__(self, message: str, exit_code: int, body: Json | None = None) -> None:
        super().__init__(message)
        self.message, self.exit_code, self.body = message, exit_code, body


class Client:
    """JSON over HTTP with a bearer token; every failure becomes a CliError with a message to print."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.retry_after = 0.0  # the last answer's Retry-After: vmbot had no room to hold a ?wait= (bot.web.long_polls)

    def call(self, method: str, path: str, body: Json | None = None, *, wait: float = 0.0) -> Json:
        query = f"?{urlencode({'wait': f'{wait:g}'})}" if wait > 0 else ""
        request = Request(
            self.url + path + query,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": "vmbot-cli",
            },
        )
        try:
            with urlopen(request, timeout=wait + 30) as response:  # noqa: S310 - the URL is the operator's
                self.retry_after = _seconds_or_zero(response.headers.get("Retry-After"))
                return _decode(response.read(), self.url)
        except HTTPError as error:
            answer = _decode(error.read(), self.url)
            details = answer.get("error") if isinstance(answer.get("error"), dict) else {}
            message = f"{details.get('message', error.reason)} ({details.get('code', error.code)})"
            raise CliError(message, EXIT_FAILED, answer) from None
        except (URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise CliError(f"cannot reach vmbot at {self.url}: {reason}", EXIT_UNREACHABLE) from None


def _seconds_or_zero(header: str | None) -> float:
    """A Retry-After in seconds (vmbot sends whole seconds; an HTTP date or junk counts as none)."""
    try:
        return max(0.0, min(float(header or 0), 60.0))
    except ValueError:
        return 0.0


def _decode(data: bytes, url: str) -> Json:
    try:
        body = json.loads(data or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise CliError(f"{url} did not answer with JSON; is VMBOT_API_URL vmbot's address?", EXIT_UNREACHABLE)
    return body


# ---- commands --------------------------------------------------------------------------


def cmd_create(client: Client, args: argparse.Namespace, out: Output) -> int:
    body = {"name": args.name, "zone": args.zone, "machine_type": args.machine_type, "ttl": args.ttl,
            "image_project": args.image_project, "image_family": args.image_family, "image": args.image,
            "disk_size": args.disk_size, "disk_type": args.disk_type, "spot": True if args.spot else None,
            "network": args.network, "subnet": args.subnet, "service_account": args.service_account,
            "tags": args.tags.split(",") if args.tags else None}  # fmt: skip
    return _mutate(client, args, out, f"{PREFIX}/vms", body)


def cmd_park(client: Client, args: argparse.Namespace, out: Output) -> int:
    body = {"image": args.image, "family": args.family}
    return _mutate(client, args, out, f"{PREFIX}/vms/{quote(args.name, safe='')}/park", body)


def cmd_restore(client: Client, args: argparse.Namespace, out: Output) -> int:
    body = {"machine_type": args.machine_type}
    return _mutate(client, args, out, f"{PREFIX}/vms/{quote(args.name, safe='')}/restore", body)


def cmd_verb(client: Client, args: argparse.Namespace, out: Output) -> int:
    """stop, start, suspend, resume: no options."""
    return _mutate(client, args, out, f"{PREFIX}/vms/{quote(args.name, safe='')}/{args.verb}", {})


def cmd_adopt(client: Client, args: argparse.Namespace, out: Output) -> int:
    body = {"zone": args.zone, "owner": args.owner, "family": args.family}
    return _mutate(client, args, out, f"{PREFIX}/vms/{quote(args.name, safe='')}/adopt", body)


def cmd_schedule(client: Client, args: argparse.Namespace, out: Output) -> int:
    path = f"{PREFIX}/vms/{quote(args.name, safe='')}/schedule"
    fields = ("park_at", "stop_at", "suspend_at", "restore_at", "start_at", "resume_at", "days", "tz", "skip", "channel")
    body = {key: value for key in fields if (value := getattr(args, key)) is not None}
    if args.off:
        if body:
            out.error("--off removes the schedule; give it alone")
            return EXIT_USAGE
        client.call("DELETE", path)
        return out.line(f"{args.name} has no schedule now.")
    answer = client.call("PUT", path, body) if body else client.call("GET", path)  # no times: what is set
    if args.json:
        return out.json(answer)
    return out.line(f"{answer['vm']} {answer['description']}")


def cmd_schedules(client: Client, args: argparse.Namespace, out: Output) -> int:
    answer = client.call("GET", f"{PREFIX}/schedules")
    if args.json:
        return out.json(answer)
    rows = [[s["vm"], s["description"]] for s in answer["schedules"]]
    rows += [[t["vm"], f"parked when its time to live runs out: {t['local']}"] for t in answer["ttls"]]
    return out.table(["NAME", "SCHEDULE"], rows) if rows else out.line("No schedules and no time to live set.")


def cmd_ttl(client: Client, args: argparse.Namespace, out: Output) -> int:
    path = f"{PREFIX}/vms/{quote(args.name, safe='')}/ttl"
    if args.ttl.lower() == "off":
        client.call("DELETE", path)
        return out.line(f"{args.name} has no time to live now.")
    answer = client.call("PUT", path, {"ttl": args.ttl})
    return out.json(answer) if args.json else out.line(f"{answer['vm']} is parked at {answer['local']}.")


def cmd_savings(client: Client, args: argparse.Namespace, out: Output) -> int:
    answer = client.call("GET", f"{PREFIX}/savings")
    if args.json:
        return out.json(answer)
    if not answer["vms"]:
        return out.line("Nothing saved yet: no VM has been parked, stopped or suspended.")
    rows = [[v["vm"], "price unknown" if v["saved"] is None else f"${v['saved']:.2f}", f"{v['parked_hours']:.1f}",
             f"{v['stopped_hours']:.1f}"] for v in answer["vms"]]  # fmt: skip
    out.table(["NAME", "SAVED", "PARKED H", "STOPPED H"], rows)
    return out.line(f"total ~${answer['total']:.2f} ({answer['label']}, prices as of {answer['as_of']})")


def cmd_delete(client: Client, args: argparse.Namespace, out: Output) -> int:
    if not args.yes:
        out.error(f"deleting {args.name} cannot be undone: add --yes to delete it for good")
        return EXIT_USAGE
    return _mutate(client, args, out, f"{PREFIX}/vms/{quote(args.name, safe='')}/delete", {})


def cmd_list(client: Client, args: argparse.Namespace, out: Output) -> int:
    answer = client.call("GET", f"{PREFIX}/vms")
    if args.json:
        return out.json(answer)
    vms = answer["vms"]
    if not vms:
        return out.line("No VMs yet. Create one with: python -m bot.cli create NAME")
    rows = [
        [vm["name"], _state(vm), vm["zone"], vm["machine_type"], vm["owner"], vm["external_ip"] or "-", vm["newest_image"] or "-"]
        for vm in vms
    ]
    return out.table(["NAME", "STATE", "ZONE", "MACHINE TYPE", "OWNER", "EXTERNAL IP", "NEWEST IMAGE"], rows)


def cmd_status(client: Client, args: argparse.Namespace, out: Output) -> int:
    path = f"{PREFIX}/vms/{quote(args.name, safe='')}" + ("" if args.no_live else "?live=true")
    answer = client.call("GET", path)
    if args.json:
        return out.json(answer)
    vm = answer["vm"]
    gcp = vm.get("gcp")
    live = "not asked" if gcp is None else (f"{gcp['status']} {gcp.get('external_ip') or ''}".strip() if gcp["exists"] else "no instance")
    out.table(
        [],
        [
            ["name", vm["name"]],
            ["state", _state(vm)],
            ["GCP now", live],
            ["owner", vm["owner"]],
            ["zone", vm["zone"]],
            ["machine type", vm["machine_type"]],
            ["external IP", vm["external_ip"] or "-"],
            ["newest image", vm["newest_image"] or "-"],
        ],
    )
    if vm["images"]:
        out.line("")
        out.table(["IMAGE", "FAMILY", "STATE", "CREATED"], [[i["name"], i["family"], i["state"], i["created_at"] or ""] for i in vm["images"]])
    if vm["operations"]:
        out.line("")
        rows = [[f"#{o['id']}", o["verb"], o["state"], o["requested_by"], o["created_at"] or "", _plain(o["error"] or "")] for o in vm["operations"]]
        out.table(["OPERATION", "VERB", "STATE", "BY", "CREATED", "ERROR"], rows)
    return EXIT_OK


def _mutate(client: Client, args: argparse.Namespace, out: Output, path: str, body: Json) -> int:
    body = {key: value for key, value in body.items() if value is not None}
    if args.notify_channel is not None:
        body["notify_channel"] = args.notify_channel or None  # --notify-channel "" asks for no Slack thread
    op = client.call("POST", path, body)["operation"]
    if not args.no_wait:
        op = _wait(client, op, args.timeout, out)
    if args.json:
        out.json({"operation": op})
    elif not op["done"]:
        out.line(f"Operation #{op['id']} ({op['verb']} {op['vm']}) is {op['state']}; follow it at {client.url}{op['url']}")
    elif op["state"] == "succeeded":
        out.line(f"{_plain(op['result'] or 'done')}  (operation #{op['id']})")
    if op["done"] and op["state"] != "succeeded":
        out.error(f"operation #{op['id']} ({op['verb']} {op['vm']}) {op['state']}: {_plain(op['error'] or 'no detail')}")
        return EXIT_FAILED
    if not op["done"] and not args.no_wait:
        out.error(f"gave up waiting after {args.timeout:g} s; operation #{op['id']} is still {op['state']}")
        return EXIT_TIMEOUT
    return EXIT_OK


def _wait(client: Client, op: Json, timeout: float, out: Output) -> Json:
    """Long-poll the operation until it ends or ``timeout`` runs out, showing a progress line."""
    started = time.monotonic()
    while not op["done"]:
        remaining = timeout - (time.monotonic() - started)
        if remaining <= 0:
            break
        out.progress(op, time.monotonic() - started)
        op = client.call("GET", op["url"], wait=min(POLL_SECONDS, remaining))["operation"]
        if not op["done"] and client.retry_after:  # answered at once instead of waiting: come back as asked
            time.sleep(min(client.retry_after, max(0.0, timeout - (time.monotonic() - started))))
    out.progress_done()
    return op


def _state(vm: Json) -> str:
    busy = vm.get("busy")
    return f"busy: {busy['verb']} #{busy['operation_id']}" if busy else vm["state"]


def _plain(text: str) -> str:
    """The store's messages are Slack mrkdwn; a terminal has no use for the backticks."""
    return text.replace("`", "")


# ---- output ------------------------------------------------------------------------------


class Output:
    """stdout for results, stderr for progress and errors (so ``--json`` output stays parseable)."""

    def __init__(self, stdout: TextIO, stderr: TextIO) -> None:
        self.stdout, self.stderr = stdout, stderr
        self.tty = stderr.isatty()
        self._last = ""

    def line(self, text: str) -> int:
        print(text, file=self.stdout)
        return EXIT_OK

    def json(self, body: Json) -> int:
        print(json.dumps(body, indent=2), file=self.stdout)
        return EXIT_OK

    def error(self, message: str) -> None:
        print(f"error: {message}", file=self.stderr)

    def table(self, headers: list[str], rows: list[list[str]]) -> int:
        lines = ([headers] if headers else []) + [[str(cell) for cell in row] for row in rows]
        widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
        for line in lines:
            self.line("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
        return EXIT_OK

    def progress(self, op: Json, elapsed: float) -> None:
        """One line that rewrites itself on a terminal; in a CI log, a new line only when something changed."""
        what = f"operation #{op['id']} {op['verb']} {op['vm']}: {op['state']}" + (f" ({op['step']})" if op["step"] else "")
        if self.tty:
            self.stderr.write(f"\r\033[K{what} · {elapsed:.0f}s")
            self.stderr.flush()
        elif what != self._last:
            print(what, file=self.stderr)
        self._last = what

    def progress_done(self) -> None:
        if self.tty and self._last:
            self.stderr.write("\r\033[K")
            self.stderr.flush()


# ---- arguments -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help="vmbot's base URL (default: $VMBOT_API_URL)")
    common.add_argument(
        "--token", default=argparse.SUPPRESS, help="API token (default: $VMBOT_API_TOKEN; the variable keeps it out of ps)"
    )
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the API's JSON")

    mutation = argparse.ArgumentParser(add_help=False)
    mutation.add_argument("--no-wait", action="store_true", help="return once the operation is accepted")
    mutation.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, help="seconds to wait at most (1800)")
    mutation.add_argument("--notify-channel", metavar="CHANNEL_ID", help="post the operation's thread in this Slack channel")

    parser = argparse.ArgumentParser(prog="python -m bot.cli", description="Drive vmbot's HTTP API.", parents=[common])
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="create|park|restore|stop|start|suspend|resume|adopt|delete|list|status|schedule|schedules|ttl|savings")
    create = verbs.add_parser("create", parents=[common, mutation], help="create a VM")
    create.add_argument("name")
    create.add_argument("--zone")
    create.add_argument("--machine-type")
    park = verbs.add_parser("park", parents=[common, mutation], help="stop, image and delete a VM")
    park.add_argument("name")
    park.add_argument("--image", help="the image's name (default: NAME-DATE-OPERATION)")
    park.add_argument("--family", help="the image family (default: the VM's name)")
    create.add_argument("--ttl", help="park it when this duration is up, e.g. 8h")
    create.add_argument("--image-project")
    create.add_argument("--image-family")
    create.add_argument("--image", help="one image (not with --image-family)")
    create.add_argument("--disk-size", type=int, metavar="GB")
    create.add_argument("--disk-type", help="pd-balanced, pd-ssd or pd-standard")
    create.add_argument("--spot", action="store_true", help="a Spot VM")
    create.add_argument("--network")
    create.add_argument("--subnet")
    create.add_argument("--tags", help="network tags, comma-separated")
    create.add_argument("--service-account")
    restore = verbs.add_parser("restore", parents=[common, mutation], help="recreate a parked VM from its newest image")
    restore.add_argument("name")
    restore.add_argument("--machine-type", help="restore as another machine type")
    for verb, words in (("stop", "stop a VM, keeping its disks"), ("start", "start a stopped VM"),
                        ("suspend", "suspend a VM, keeping its memory"), ("resume", "resume a suspended VM")):
        verbs.add_parser(verb, parents=[common, mutation], help=words).add_argument("name")
    adopt = verbs.add_parser("adopt", parents=[common, mutation], help="take an instance made outside vmbot under management")
    adopt.add_argument("name")
    adopt.add_argument("--zone")
    adopt.add_argument("--owner", help="admins only: the Slack user id who owns it")
    adopt.add_argument("--family", help="the image family its parks use")
    schedule = verbs.add_parser("schedule", parents=[common], help="show, set (or --off remove) a VM's schedule")
    schedule.add_argument("name")
    for option in ("park-at", "stop-at", "suspend-at", "restore-at", "start-at", "resume-at"):
        schedule.add_argument(f"--{option}", metavar="HH:MM")
    schedule.add_argument("--days", help="daily (default), mon-fri, mon,wed ...")
    schedule.add_argument("--tz", help="an IANA zone, e.g. Europe/Berlin")
    schedule.add_argument("--skip", metavar="YYYY-MM-DD,...")
    schedule.add_argument("--channel", metavar="CHANNEL_ID", help="where notices go")
    schedule.add_argument("--off", action="store_true", help="remove the schedule")
    verbs.add_parser("schedules", parents=[common], help="every schedule and time to live")
    ttl = verbs.add_parser("ttl", parents=[common], help="park a VM after a while (8h), or off")
    ttl.add_argument("name")
    ttl.add_argument("ttl", metavar="DURATION|off")
    verbs.add_parser("savings", parents=[common], help="what parking, stopping and suspending saved")
    delete = verbs.add_parser("delete", parents=[common, mutation], help="delete a VM and its boot disk for good")
    delete.add_argument("name")
    delete.add_argument("--yes", action="store_true", help="yes, delete it: there is no way back")
    verbs.add_parser("list", parents=[common], help="the VMs vmbot manages")
    status = verbs.add_parser("status", parents=[common], help="one VM, its images and its last operations")
    status.add_argument("name")
    status.add_argument("--no-live", action="store_true", help="do not ask GCP for the live state")
    return parser


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value


COMMANDS = {
    "create": cmd_create, "park": cmd_park, "restore": cmd_restore, "delete": cmd_delete,
    "list": cmd_list, "status": cmd_status, "stop": cmd_verb, "start": cmd_verb, "suspend": cmd_verb,
    "resume": cmd_verb, "adopt": cmd_adopt, "schedule": cmd_schedule, "schedules": cmd_schedules, "ttl": cmd_ttl,
    "savings": cmd_savings,
}


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out = Output(stdout or sys.stdout, stderr or sys.stderr)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse has printed the usage and the problem
        return int(exit_.code or 0) and EXIT_USAGE
    args.json = getattr(args, "json", False)
    url = (getattr(args, "url", None) or os.environ.get("VMBOT_API_URL", "")).strip().rstrip("/")
    token = (getattr(args, "token", None) or os.environ.get("VMBOT_API_TOKEN", "")).strip()
    if not url or not token:
        missing = "VMBOT_API_URL (or --url)" if not url else "VMBOT_API_TOKEN (or --token)"
        out.error(f"{missing} is not set; see README > HTTP API and CLI")
        return EXIT_USAGE
    client = Client(url.removesuffix(PREFIX), token)
    try:
        return COMMANDS[args.verb](client, args, out)
    except CliError as error:
        if args.json and error.body is not None:
            out.json(error.body)
        out.error(error.message)
        return error.exit_code


if __name__ == "__main__":
    sys.exit(main())
