"""vmbot: create, park and restore Compute Engine VMs from Slack."""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def _version() -> str:
    """The checkout's pyproject.toml when run from one (`python -m bot`), else the installed package's metadata."""
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text()).get("project", {}) if pyproject.is_file() else {}
    if project.get("name") == "vmbot":
        return str(project["version"])
    try:
        return version("vmbot")  # pip install ., the container
    except PackageNotFoundError:
        return "unknown"


__version__ = _version()
