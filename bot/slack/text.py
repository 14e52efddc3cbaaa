"""The small pieces of Slack mrkdwn every renderer uses: escaping outside text, and naming who asked.

Text from outside (a user's input, a VM name, a GCP error) enters mrkdwn only
through ``escape`` or ``code``, so it is shown, never interpreted.
"""

from __future__ import annotations

import re

from storage.models import UNKNOWN_OWNER

SLACK_USER_RE = re.compile(r"^[UW][A-Z0-9]{2,}$")


def escape(text: str, *, keep_code_spans: bool = False) -> str:
    """Escape Slack's control characters so user text is shown, never interpreted (no <!channel>, no links).

    Backticks become plain quotes too: echoed text sits inside a `code span`, and a
    backtick in it would close the span and let the rest be read as markup.
    ``keep_code_spans`` keeps them, for ``from_core``.
    """
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text if keep_code_spans else text.replace("`", "'")


def from_core(text: str) -> str:
    """A text the core wrote (bot.core.workflows: steps, results, failures) as Slack mrkdwn.

    The core writes plain words with light markup (`code`, _italics_, *bold*,
    :emoji:) and never Slack's control sequences (``<...>``, ``&``), but it
    quotes outside text: GCP's error messages, zones and names people typed.
    Escaping the whole text here keeps the core's markup and makes every quoted
    piece shown, never interpreted: no ``<!channel>``, no disguised link.
    """
    return escape(text, keep_code_spans=True)


def code(text: str) -> str:
    """Outside text as a code span: `text`, escaped."""
    return f"`{escape(text)}`"


def is_slack_user(requested_by: str) -> bool:
    """Whether an operation's ``requested_by`` is a Slack user id, rather than an HTTP API actor's name."""
    return bool(SLACK_USER_RE.match(requested_by))


def actor(requested_by: str) -> str:
    """Who asked, as Slack shows it: a mention for a Slack user, the token's name for the HTTP API."""
    if requested_by == UNKNOWN_OWNER:
        return "_nobody (found in GCP by reconcile)_"
    return f"<@{requested_by}>" if is_slack_user(requested_by) else f"`{escape(requested_by)}` (API)"


def mentions(users: frozenset[str] | list[str]) -> str:
    return ", ".join(actor(user) for user in sorted(users))
