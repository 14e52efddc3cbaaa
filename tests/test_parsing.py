"""The command parser: what it accepts, and the message for everything it does not."""

import pytest

from bot.core.errors import UsageError
from bot.slack.parsing import Command, parse


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Command("help")),
        ("help", Command("help")),
        ("create test-vm-22", Command("create", "test-vm-22")),
        ("CREATE test-vm-22 zone=europe-west1-b", Command("create", "test-vm-22", {"zone": "europe-west1-b"})),
        ('create a1 machine-type="e2-medium"', Command("create", "a1", {"machine-type": "e2-medium"})),
        ("park test-vm-22", Command("park", "test-vm-22")),
        (
            "park test-vm-22 image=image-224 family=segmind-fam",
            Command("park", "test-vm-22", {"image": "image-224", "family": "segmind-fam"}),
        ),
        ("list", Command("list")),
    ],
)
def test_valid_commands(text: str, expected: Command) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("crate x", "Did you mean `/vm create`?"),
        ("frobnicate x", "`/vm help` lists what I can do"),
        ("create Test-VM", "Did you mean `test-vm`?"),
        ("create 9lives", "is not a valid VM name"),
        ("create ab-", "not ending in a hyphen"),
        ("create " + "a" * 64, "at most 63 characters"),
        ("create", "needs a VM name"),
        ("park a b", "got more than I expected"),
        ("create a colour=blue", "has no option `colour=`"),
        ("park a zone=us-central1-a", "has no option `zone=`"),
        ("park a image=Image_1", "`Image_1` is not a valid image name"),
        ("park a image=" + "i" * 64, "not a valid image name"),
        ("park a family=-fam", "`-fam` is not a valid image family name"),
        ("restore a image=image-224", "has no option `image=`"),
        ("create a zone=moon", "is not a zone name"),
        ("create a machine-type=HUGE", "is not a machine type"),
        ('create "a', "a quote is not closed"),
        ("create " + "x" * 400, "too long"),
        ("<!channel> x", "`/vm &lt;!channel&gt;`"),
    ],
)
def test_bad_input_gets_an_actionable_message(text: str, message: str) -> None:
    with pytest.raises(UsageError) as error:
        parse(text)
    assert message in str(error.value)
