"""VMBOT_API_TOKENS and VMBOT_API_NOTIFY_CHANNEL: the format, and problems that name the entry, never the token."""

from __future__ import annotations

import pytest

from bot.settings import Settings, SettingsError

BASE = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "GOOGLE_CLOUD_PROJECT": "p"}
TOKEN1, TOKEN2 = "t" * 16 + "-one", "u" * 16 + "-two"


def test_no_tokens_means_the_api_is_off() -> None:
    settings = Settings.from_env(BASE)
    assert settings.api_tokens == () and settings.api_notify_channel is None


def test_name_token_pairs() -> None:
    settings = Settings.from_env(
        {**BASE, "VMBOT_API_TOKENS": f" ci={TOKEN1} , deploy-bot={TOKEN2},", "VMBOT_API_NOTIFY_CHANNEL": "C0123ABCD"}
    )
    assert settings.api_tokens == (("ci", TOKEN1), ("deploy-bot", TOKEN2))
    assert settings.api_notify_channel == "C0123ABCD"
    assert TOKEN1 not in repr(settings)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (TOKEN1, "entry 1 has no '='"),
        (f"ci={TOKEN1},U100={TOKEN2}", "entry 2: 'U100' is not a valid name"),
        ("ci=short", "entry 1 (ci): the token must be at least 16 characters"),
        (f"ci={TOKEN1},ci={TOKEN2}", "entry 2: the name 'ci' is used twice"),
        (f"ci={TOKEN1},cd={TOKEN1}", "entry 2 (cd): the same token is given to two names"),
        (f"ci={TOKEN1},unknown={TOKEN2}", "entry 2: the name 'unknown' is reserved"),  # reconcile's placeholder owner
    ],
)
def test_bad_tokens_are_named_without_showing_the_token(value: str, problem: str) -> None:
    with pytest.raises(SettingsError) as error:
        Settings.from_env({**BASE, "VMBOT_API_TOKENS": value})
    assert any(problem in line for line in error.value.problems), error.value.problems
    assert TOKEN1 not in str(error.value) and TOKEN2 not in str(error.value)


def test_the_notify_channel_must_be_a_channel_id() -> None:
    with pytest.raises(SettingsError, match="VMBOT_API_NOTIFY_CHANNEL='#ops' is not a Slack channel id"):
        Settings.from_env({**BASE, "VMBOT_API_NOTIFY_CHANNEL": "#ops"})
