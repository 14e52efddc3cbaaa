"""The REST session reads the environment's proxy settings once, when the adapter is made (bot.gcp.compute
``_tune_session``), and still honours them: a proxy named there carries every call, NO_PROXY exempts a host."""

from __future__ import annotations

import socket

import pytest

from bot.gcp.compute import Compute, GceError
from bot.settings import Settings
from conftest import PROJECT
from standins.compute import ComputeStandin

ZONE = "us-central1-a"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_proxy_in_the_environment_carries_the_calls(
    settings: Settings, gcp: ComputeStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    gcp.seed_instance(PROJECT, ZONE, "vm-1")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    compute = Compute(settings.project, endpoint=settings.compute_endpoint, retry_deadline=0)
    with pytest.raises(GceError, match="Unable to connect to proxy"):
        compute.get_instance(ZONE, "vm-1")  # through the (closed) proxy


def test_no_proxy_exempts_the_endpoint(settings: Settings, gcp: ComputeStandin, monkeypatch: pytest.MonkeyPatch) -> None:
    gcp.seed_instance(PROJECT, ZONE, "vm-1")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    compute = Compute(settings.project, endpoint=settings.compute_endpoint, retry_deadline=0)
    monkeypatch.delenv("NO_PROXY")  # read once, when the adapter was made
    info = compute.get_instance(ZONE, "vm-1")
    assert info is not None and info.name == "vm-1"
