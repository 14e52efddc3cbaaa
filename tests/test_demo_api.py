"""The demo serves the HTTP API: `python -m bot demo --no-terminal` prints its URL and a token, and the
README's curl examples (create, park, restore) and vmbot-cli work against it as written."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
EXPORT = re.compile(r"^\s*export VMBOT=(\S+) TOKEN=(\S+) VMBOT_API_URL=(\S+) VMBOT_API_TOKEN=(\S+)$")


@dataclass
class Demo:
    process: subprocess.Popen[str]
    url: str
    token: str
    output: list[str]

    def post(self, path: str, body: dict | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return requests.post(f"{self.url}{path}", json=body, headers=headers, timeout=120)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "VMBOT_API_URL": self.url, "VMBOT_API_TOKEN": self.token}
        return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip


@pytest.fixture
def demo() -> Iterator[Demo]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "demo", "--no-terminal", "--port", "0", "--operation-seconds", "0.1"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    output: list[str] = []
    found: list[re.Match[str]] = []
    ready = threading.Event()

    def read() -> None:  # the whole output, so the demo never blocks on a full pipe
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if (match := EXPORT.match(line.rstrip("\n"))) and not found:
                found.append(match)
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert ready.wait(60) and found, "".join(output)
        url, token, api_url, api_token = found[0].groups()
        assert (api_url, api_token) == (url, token)
        yield Demo(process, url, token, output)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, "".join(output)


def test_the_readme_curl_examples_and_the_cli_work_against_the_headless_demo(demo: Demo) -> None:
    # create, and wait for it to finish
    created = demo.post("/api/v1/vms?wait=300", {"name": "test-vm-22", "zone": "us-central1-a", "machine_type": "e2-small"})
    assert created.status_code == 200, created.text
    assert created.json()["operation"]["state"] == "succeeded"
    assert created.json()["operation"]["requested_by"] == "demo-api"

    # park with an image name and family: 202 at once, then poll the Location
    parked = demo.post("/api/v1/vms/test-vm-22/park", {"image": "image-224", "family": "segmind-fam"})
    assert parked.status_code == 202, parked.text
    assert parked.headers["Location"] == "/api/v1/operations/2"  # the README polls operations/2
    polled = requests.get(f"{demo.url}/api/v1/operations/2?wait=600",
                          headers={"Authorization": f"Bearer {demo.token}"}, timeout=120)  # fmt: skip
    assert polled.json()["operation"]["state"] == "succeeded", polled.text

    # restore from the newest image
    restored = demo.post("/api/v1/vms/test-vm-22/restore?wait=300")
    assert restored.json()["operation"]["state"] == "succeeded", restored.text

    # vmbot-cli reads VMBOT_API_URL and VMBOT_API_TOKEN, as the demo printed them
    listed = demo.cli("list")
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"test-vm-22\s+running", listed.stdout)
    for args in (("park", "test-vm-22", "--image", "image-225"), ("restore", "test-vm-22")):
        done = demo.cli(*args)
        assert done.returncode == 0, done.stdout + done.stderr

    # and the operations show on /metrics
    metrics = requests.get(f"{demo.url}/metrics", timeout=30).text
    assert 'vmbot_operations_ended_total{outcome="succeeded",verb="park"} 2.0' in metrics


def test_a_wrong_token_is_refused_by_the_demo(demo: Demo) -> None:
    answer = requests.get(f"{demo.url}/api/v1/vms", headers={"Authorization": "Bearer not-the-demo-token"}, timeout=30)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "unauthorized"


def test_the_headless_demo_logs_to_stderr(demo: Demo) -> None:
    """Nothing plays back in the terminal, so the bot's warnings are not kept for a playback's end."""
    answer = requests.post(f"{demo.url}/slack/events", data=b"token=x", timeout=30)  # unsigned: Bolt refuses it
    assert answer.status_code == 401
    deadline = time.monotonic() + 10
    while not any("signature" in line.lower() or "401" in line for line in demo.output) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert any("signature" in line.lower() or "401" in line for line in demo.output), "".join(demo.output)
