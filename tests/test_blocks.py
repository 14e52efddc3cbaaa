"""Block Kit builders, checked as data."""

from bot.blocks import escape, sections


def test_long_lists_are_split_into_sections_slack_accepts() -> None:
    lines = [f"line {i} " + "x" * 90 for i in range(100)]
    blocks = sections(lines)
    texts = [b["text"]["text"] for b in blocks]
    assert len(blocks) > 1 and all(len(t) <= 3000 for t in texts)
    assert "\n".join(texts).splitlines() == lines


def test_user_text_cannot_ping_or_link() -> None:
    assert "<" not in escape("<!channel> <@U1> <https://x|y>") and ">" not in escape("<!here>")
