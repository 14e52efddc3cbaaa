"""`/vm help`, `/vm list` and `/vm status`: answered to the asker only, from the store (and GCP for status)."""

from __future__ import annotations

from conftest import Running
from standins.compute import ComputeStandin
from standins.slack_api import SlackStandin
from standins.slack_driver import SlackDriver


def test_help_and_a_bare_command_show_usage(driver: SlackDriver) -> None:
    for text in ("help", ""):
        reply = driver.command(text)
        assert reply.status == 200
        for usage in ("/vm create NAME [zone=ZONE] [machine-type=TYPE]", "/vm park NAME", "/vm restore NAME", "/vm list", "/vm status NAME"):
            assert usage in reply.text


def test_list_shows_state_owner_zone_and_newest_image(driver: SlackDriver, gcp: ComputeStandin, running: Running) -> None:
    assert "I don't manage any VMs yet" in driver.command("list").text
    driver.command("create web-1")
    driver.command("create db-1 zone=europe-west1-b machine-type=e2-medium", user="U200")
    running.settle()
    question = driver.command("park web-1")
    gcp.hold_operations()
    driver.click("park_confirm", blocks=question.blocks)

    listing = str(driver.command("list").blocks)
    assert "*2 VMs*" in listing
    assert "*db-1*  :large_green_circle: running" in listing and "<@U200> · europe-west1-b · e2-medium · no image" in listing
    assert "*web-1*  :hourglass_flowing_sand: busy: parking" in listing
    gcp.release_operations()
    running.settle()
    image = running.bot.store.newest_image("web-1").name
    listing = str(driver.command("list").blocks)
    assert "*web-1*  :parking: parked" in listing and f"<@U100> · us-central1-a · e2-small · `{image}`" in listing


def test_status_adds_the_live_gcp_state_and_the_last_operations(
    driver: SlackDriver, slack: SlackStandin, gcp: ComputeStandin, running: Running
) -> None:
    driver.command("create web-1")
    running.settle()
    ip = running.bot.store.vm("web-1").external_ip
    ack = driver.command("status web-1")
    assert "Looking up `web-1`" in ack.text and ack.in_time
    running.settle()
    status = slack.responses[-1]
    assert status["response_type"] == "ephemeral"
    text = str(status["blocks"])
    assert f"GCP now: RUNNING at {ip}" in text and "#1 create by <@U100>: succeeded" in text
