"""Errors in two tiers: a UserError carries a message meant for the person who asked;
anything else is a bug, logged once with its traceback by the app's global error handler."""


class UserError(Exception):
    """An expected failure; ``str(error)`` is shown to the user as it is (Slack mrkdwn), after ``icon``."""

    icon = ":warning:"


class UsageError(UserError):
    """The command text could not be understood."""


class Refused(UserError):
    """The command was understood but is not allowed now (state, ownership, a running operation)."""


class AlreadyRequested(UserError):
    """The same request (redelivered by Slack, or a button pressed twice) already made an operation;
    the message says which, who asked, and where its thread is. Not a failure: nothing is wrong."""

    icon = ":information_source:"
