"""What a person reads after the everyday verbs: each answer agrees with the others and with the facts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import Running, create_vm, park_vm, restore_vm
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver

REPO = Path(__file__).resolve().parent.parent


def last_reply(slack: SlackStandin) -> str:
    return slack.thread("C100", slack.messages("C100")[-1].ts)[-1].text


def test_a_second_park_does_not_say_only_one_image_remains(driver: SlackDriver, running: Running, slack: SlackStandin) -> None:
    create_vm(driver, running)
    park_vm(driver, running)
    first = running.bot.store.newest_image("vm-a").name
    assert f"`vm-a` is parked: only image `{first}`" in last_reply(slack)
    restore_vm(driver, running)
    park_vm(driver, running)
    second = running.bot.store.newest_image("vm-a").name
    said = last_reply(slack)
    assert "only image" not in said, said
    assert f"`vm-a` is parked: image `{second}` (family `vm-a`) holds its disk." in said
    assert f"The previous image `{first}` is now dirty and will be swept." in said


def test_a_deleted_vm_reads_as_deleted_in_status_and_list(driver: SlackDriver, running: Running, slack: SlackStandin) -> None:
    create_vm(driver, running)
    park_vm(driver, running)
    driver.click("delete_confirm", blocks=driver.command("delete vm-a").blocks)
    running.settle()

    driver.command("status vm-a")
    running.settle()
    status = str(slack.responses[-1].get("blocks"))
    assert "No image yet" not in status
    assert "No ready image; 1 image (1 dirty): `/vm images vm-a` shows them" in status

    listed = driver.command("list").text
    assert "I don't manage any VMs yet" not in listed
    assert listed == (
        "No VMs are live: the one I managed is deleted. `/vm history NAME` shows what happened to one; "
        "`/vm create NAME` makes a new one."
    )


def test_migrate_help_only_helps(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run([sys.executable, "-m", "storage.migrate", "--help"], cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "usage: python -m storage.migrate" in done.stdout and "DATABASE_URL" in done.stdout
    assert list(tmp_path.iterdir()) == [], "no database was made"
