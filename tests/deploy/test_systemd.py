"""deploy/systemd: the units pass ``systemd-analyze verify`` and ``security``, and say what
the README promises (commands the CLI accepts, graceful stops, no restart on a config error).

``verify`` checks that ExecStart's binary exists and is executable. The units name the
documented install path, /opt/hookledger/.venv/bin/hookledger, which a test must not create on
the machine it runs on. So each test copies the units to a temporary directory and rewrites
that one path, and only that path, to the ``hookledger`` console script of the environment
running the tests: every other line is verified as shipped, and the command verified is the
project's own entry point. Settings are read as systemd reads them: ``Environment=`` lines as
quoted assignments, time spans by ``systemd-analyze timespan``, ExecStart by the real parser.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.deploy.tools import (
    DEPLOY,
    cli_args,
    cli_command,
    hookledger_executable,
    job_timeout_s,
    require_tool,
)

UNITS = DEPLOY / "systemd"
INSTALLED = "/opt/hookledger/.venv/bin/hookledger"
SERVICES = {
    "hookledger-web.service": "web",
    "hookledger-worker@.service": "worker",
    "hookledger-sweeper.service": "sweeper",
    "hookledger-metrics.service": "metrics",
}
# `systemd-analyze security` exposure, 0 (locked down) to 10; its threshold is exposure x 10.
MAX_EXPOSURE = 2.0


def _read(name: str, directory: Path = UNITS) -> dict[str, dict[str, list[str]]]:
    """A unit file as section -> key -> values (a key may repeat, e.g. SystemCallFilter)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in (directory / name).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, f"{name}: {line!r} before any section"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit.get(section, {}).get(key, [])
    assert len(values) == 1, f"[{section}] {key}: expected one value, found {values}"
    return values[0]


def _environment(unit: dict[str, dict[str, list[str]]]) -> dict[str, str]:
    """What the unit's ``Environment=`` lines set, read as systemd reads them: each line holds
    space-separated ``NAME=value`` assignments, quoted or not; a later one wins."""
    env: dict[str, str] = {}
    for line in unit["Service"].get("Environment", []):
        for assignment in shlex.split(line):
            name, sep, value = assignment.partition("=")
            assert sep, f"Environment={line}: {assignment!r} is not NAME=value"
            env[name] = value
    return env


def _timespan_s(value: str) -> float:
    """A systemd time span (``90``, ``1min 30s``) in seconds, as systemd itself reads it."""
    result = subprocess.run(
        [require_tool("systemd-analyze"), "timespan", value],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (microseconds,) = re.findall(r"μs:\s*(\d+)", result.stdout)
    return int(microseconds) / 1_000_000


@pytest.fixture
def unit_dir(tmp_path: Path) -> Path:
    """The shipped units in ``tmp_path``, ExecStart pointing at this environment's hookledger."""
    executable = str(hookledger_executable())
    for path in UNITS.iterdir():
        text = path.read_text(encoding="utf-8")
        (tmp_path / path.name).write_text(text.replace(INSTALLED, executable), encoding="utf-8")
        if path.suffix == ".service":  # the program systemd starts is the one rewritten
            argv = shlex.split(_one(_read(path.name, tmp_path), "Service", "ExecStart"))
            assert argv[0] == executable, f"{path.name}: ExecStart does not run {INSTALLED}"
    return tmp_path


def test_every_unit_file_is_covered() -> None:
    assert {p.name for p in UNITS.iterdir()} == {*SERVICES, "hookledger.target"}


@pytest.mark.parametrize(
    "unit",
    [
        "hookledger-web.service",
        "hookledger-worker@1.service",  # an instance of the template
        "hookledger-sweeper.service",
        "hookledger-metrics.service",
        "hookledger.target",
    ],
)
def test_systemd_analyze_verify_passes_without_a_warning(unit_dir: Path, unit: str) -> None:
    tool = require_tool("systemd-analyze")
    result = subprocess.run(
        [tool, "verify", str(unit_dir / unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    # verify exits 0 on an unknown key or an unparsable value and only warns: any line about
    # our units fails the test too.
    ours = [line for line in output.splitlines() if str(unit_dir) in line or "hookledger" in line]
    assert result.returncode == 0, output
    assert not ours, "\n".join(ours)


@pytest.mark.parametrize(
    "unit",
    [
        "hookledger-web.service",
        "hookledger-worker@1.service",
        "hookledger-sweeper.service",
        "hookledger-metrics.service",
    ],
)
def test_services_are_hardened(unit_dir: Path, unit: str) -> None:
    tool = require_tool("systemd-analyze")
    result = subprocess.run(
        [
            tool,
            "security",
            "--offline=true",
            f"--threshold={int(MAX_EXPOSURE * 10)}",
            "--no-pager",
            str(unit_dir / unit),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    overall = [line for line in result.stdout.splitlines() if "Overall exposure" in line]
    assert result.returncode == 0, f"exposure above {MAX_EXPOSURE}: {overall or result.stderr}"


@pytest.mark.parametrize(("name", "command"), SERVICES.items())
def test_exec_start_is_a_command_the_cli_accepts(name: str, command: str) -> None:
    argv = shlex.split(_one(_read(name), "Service", "ExecStart"))
    assert argv[0] == INSTALLED
    assert cli_command(argv[1:]) == command


@pytest.mark.parametrize("name", SERVICES)
def test_services_run_unprivileged_with_the_documented_files(name: str) -> None:
    unit = _read(name)
    assert _one(unit, "Service", "User") not in {"root", "0"}
    # Not optional (no "-" in front): a service without its secrets does not start.
    assert _one(unit, "Service", "EnvironmentFile") == "/etc/hookledger/env"
    assert _environment(unit)["HOOKLEDGER_CONFIG"] == "/etc/hookledger/hookledger.toml"
    assert _one(unit, "Service", "WorkingDirectory") == "/var/lib/hookledger"
    assert _one(unit, "Service", "StateDirectory") == "hookledger"
    # Exit code 2 is a configuration error (app/cli): restarting cannot fix it.
    assert "2" in _one(unit, "Service", "RestartPreventExitStatus").split()
    assert _one(unit, "Service", "Restart") == "always"
    assert _one(unit, "Service", "KillSignal") == "SIGTERM"
    # SIGTERM to the main process only; it stops its own children (uvicorn's workers, RQ's
    # work horse) gracefully, and what is left at the timeout is killed.
    assert _one(unit, "Service", "KillMode") == "mixed"
    assert "hookledger.target" in _one(unit, "Install", "WantedBy").split()
    assert _one(unit, "Unit", "PartOf") == "hookledger.target"


def test_the_worker_outlasts_a_job_when_it_is_stopped() -> None:
    stop = _one(_read("hookledger-worker@.service"), "Service", "TimeoutStopSec")
    timeout = job_timeout_s((DEPLOY / "hookledger.toml").read_text(encoding="utf-8"))
    assert _timespan_s(stop) > timeout, f"TimeoutStopSec={stop} must outlast {timeout} s"


def test_the_web_unit_listens_where_the_readme_says() -> None:
    argv = shlex.split(_one(_read("hookledger-web.service"), "Service", "ExecStart"))
    # Behind a proxy on the same host: reachable from this host only.
    assert ipaddress.ip_address(cli_args(argv[1:]).host).is_loopback


def test_every_service_writes_metrics_to_one_preserved_runtime_directory() -> None:
    """web, workers, sweeper and the metrics unit share PROMETHEUS_MULTIPROC_DIR under /run (a
    tmpfs emptied at boot), kept when one unit restarts so the others' files stay."""
    shared = set()
    for name in SERVICES:
        unit = _read(name)
        directory = _environment(unit)["PROMETHEUS_MULTIPROC_DIR"]
        # systemd creates each RuntimeDirectory under /run, owned by the unit's user.
        made = {f"/run/{d}" for d in " ".join(unit["Service"]["RuntimeDirectory"]).split()}
        assert directory in made, name
        assert _one(unit, "Service", "RuntimeDirectoryPreserve") == "yes", name
        shared.add(directory)
    assert len(shared) == 1


@pytest.mark.parametrize(
    "name", ["hookledger-web.service", "hookledger-worker@.service", "hookledger-sweeper.service"]
)
def test_each_process_upgrades_the_schema_before_it_starts(name: str) -> None:
    """Whichever unit starts first after a release brings the schema to it; the others find it
    current (the upgrade is serialised by a lock). Without it they refuse: exit 2."""
    unit = _read(name)
    argv = shlex.split(_one(unit, "Service", "ExecStartPre"))
    assert argv[0] == INSTALLED
    parsed = cli_args(argv[1:])
    assert (parsed.command, parsed.db_command) == ("db", "upgrade")
    # The same environment as the process: the one database.
    assert _one(unit, "Service", "EnvironmentFile") == "/etc/hookledger/env"
