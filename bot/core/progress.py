"""What a workflow tells about its operation as it goes; a door implements it (a Slack thread, the log)."""

from __future__ import annotations

from typing import Protocol

from bot.core.errors import UserError


def duration(seconds: float) -> str:
    """A length of time as people say it: "24 h", "30 min", "45 s"."""
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


class Progress(Protocol):
    def started(self, detail: str) -> None: ...

    def step(self, text: str) -> None: ...

    def finished(self, *, ok: bool, headline: str, detail: str, took: float, retry: bool = True) -> None:
        """The operation ended; ``retry`` False when trying again can only fail the same way."""
        ...

    def refused(self, refusal: UserError) -> None:
        """The operation was refused before its thread began: tell the person who asked."""
        ...
