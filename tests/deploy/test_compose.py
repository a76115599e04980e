"""deploy/compose.yaml, its env file example, hookledger.toml and redis.conf.

Checked here without Docker: the services and what each runs (commands parsed by the real
CLI), health-gated start order, the worker's scaling and stop grace, Redis on the shipped
redis.conf (started for real from compose's own command line, with the container-only options
pointed at loopback and a temporary directory), PostgreSQL's volume and health check, no secret
in the file, and an env example whose secrets are all empty. ``docker compose config`` runs
only where the compose plugin works; it is missing on the development machine and may be on
CI, so there the static checks are what holds.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ConnectionError, ResponseError
from redis.retry import Retry

from app.settings import parse_config
from tests.canary import canary
from tests.deploy.tools import (
    DEPLOY,
    REPO,
    cli_command,
    env_file,
    job_timeout_s,
    load_yaml,
    require_tool,
    synthetic_env,
    toml_env_refs,
)

COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / "hookledger.env.example"
CONFIG = DEPLOY / "hookledger.toml"
HOOKLEDGER = {"web": "web", "worker": "worker", "sweeper": "sweeper"}
# Variables of the env example that are not secrets and may carry a value.
NOT_SECRET = {"HOOKLEDGER_LOG_LEVEL", "HOOKLEDGER_LOG_FORMAT"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = load_yaml(COMPOSE)
    assert isinstance(document, dict)
    return document


def _seconds(duration: str) -> float:
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration):
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    assert total > 0, f"unreadable duration {duration!r}"
    return total


def test_the_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {*HOOKLEDGER, "db", "redis"}


@pytest.mark.parametrize(("service", "command"), HOOKLEDGER.items())
def test_hookledger_services_run_the_image_with_a_valid_command(
    compose: dict[str, Any], service: str, command: str
) -> None:
    spec = compose["services"][service]
    assert cli_command(spec["command"]) == command
    assert spec["image"] == compose["services"]["web"]["image"]  # one image for all three
    context = (DEPLOY / spec["build"]["context"]).resolve()
    assert context == REPO, "built from the repository root (.dockerignore there)"
    assert (context / spec["build"]["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    assert spec["env_file"] == ["hookledger.env"]
    environment = spec["environment"]
    assert environment["HOOKLEDGER_CONFIG"] == "/etc/hookledger/hookledger.toml"
    assert environment["HOOKLEDGER_DATABASE_URL"].startswith("postgresql://")
    assert "@db:5432/" in environment["HOOKLEDGER_DATABASE_URL"]
    assert "@redis:6379/" in environment["HOOKLEDGER_REDIS_URL"]
    assert "./hookledger.toml:/etc/hookledger/hookledger.toml:ro" in spec["volumes"]
    # Started once PostgreSQL and Redis answer their health checks.
    assert spec["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    assert spec["read_only"] is True
    assert "/tmp" in spec["tmpfs"]
    assert spec["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in spec["security_opt"]
    assert spec["restart"] in {"always", "unless-stopped"}


def test_web_is_published_on_loopback_only_and_keeps_the_image_healthcheck(
    compose: dict[str, Any],
) -> None:
    web = compose["services"]["web"]
    assert web["ports"] == ["127.0.0.1:8000:8000"]
    assert web["command"][web["command"].index("--port") + 1] == "8000"
    assert "healthcheck" not in web  # the image's: GET /healthz (deploy/docker/healthcheck.py)
    for name in ("worker", "sweeper", "db", "redis"):
        assert "ports" not in compose["services"][name], f"{name} must not be published"


def test_workers_scale_and_outlast_a_job(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert worker["deploy"]["replicas"] >= 2
    # `--scale worker=N` needs no fixed name and no host port.
    assert "container_name" not in worker and "ports" not in worker
    timeout = job_timeout_s(CONFIG.read_text(encoding="utf-8"))
    assert _seconds(worker["stop_grace_period"]) > timeout
    assert worker["healthcheck"] == {"disable": True}


def test_postgresql_keeps_its_data_and_reports_health(compose: dict[str, Any]) -> None:
    db = compose["services"]["db"]
    assert re.fullmatch(r"postgres:\d+(\.\d+)?(-[a-z]+)?", db["image"])
    assert "pgdata:/var/lib/postgresql/data" in db["volumes"]
    assert "pgdata" in compose["volumes"]
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert db["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")


def test_redis_runs_on_the_shipped_redis_conf(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert re.fullmatch(r"redis:\d+(\.\d+)*(-[a-z]+)?", redis["image"])
    assert "./redis.conf:/usr/local/etc/redis/redis.conf:ro" in redis["volumes"]
    assert "redisdata:/data" in redis["volumes"] and "redisdata" in compose["volumes"]
    command = redis["command"]
    assert command[:2] == ["redis-server", "/usr/local/etc/redis/redis.conf"]
    overridden = {arg.removeprefix("--") for arg in command[2:] if arg.startswith("--")}
    assert overridden == {"bind", "dir", "requirepass"}, "durability settings stay the conf's"
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])
    conf = _redis_conf()
    assert conf["appendonly"] == "yes"
    assert conf["maxmemory-policy"] == "noeviction"


def _redis_conf() -> dict[str, str]:
    conf = {}
    for line in (DEPLOY / "redis.conf").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            conf[key] = value.strip()
    return conf


def test_no_secret_is_written_into_compose() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    # Credentials in URLs and passwords come from the env file by interpolation only.
    for match in re.finditer(r"://[^/\s]*:([^@\s]*)@", text):
        assert match.group(1).startswith("${"), match.group(0)
    for match in re.finditer(r"(?m)^\s*([A-Z_]*(?:PASSWORD|SECRET|TOKEN)[A-Z_]*):\s*(.*)$", text):
        assert match.group(2).startswith("${"), match.group(0)


def test_every_interpolated_variable_is_in_the_env_example() -> None:
    referenced = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE.read_text(encoding="utf-8")))
    assert referenced == {"POSTGRES_PASSWORD", "REDIS_PASSWORD"}
    assert referenced <= set(env_file(ENV_EXAMPLE))


def test_the_env_example_names_every_secret_the_config_needs_and_fills_none() -> None:
    values = env_file(ENV_EXAMPLE)
    needed = toml_env_refs(CONFIG.read_text(encoding="utf-8"))
    assert needed <= set(values), f"missing from the example: {sorted(needed - set(values))}"
    assert {"HOOKLEDGER_DATABASE_URL", "HOOKLEDGER_REDIS_URL", "HOOKLEDGER_ADMIN_TOKEN"} <= set(
        values
    )
    filled = {k: v for k, v in values.items() if v and k not in NOT_SECRET}
    assert not filled, f"placeholders must be empty: {sorted(filled)}"


def test_the_shipped_config_is_valid() -> None:
    text = CONFIG.read_text(encoding="utf-8")
    config = parse_config(text, synthetic_env(text), origin=str(CONFIG))
    assert config.sources, "at least one source"
    assert {s.kind for s in config.sources.values()} == {"htx", "pingpong", "trx-energy"}
    # The compose network's gateway (a TLS proxy on the host) is trusted, and nothing wider.
    gateway = compose_gateway()
    assert [str(n) for n in config.server.trusted_proxies] == ["127.0.0.1/32", f"{gateway}/32"]


def compose_gateway() -> str:
    network = load_yaml(COMPOSE)["networks"]["hookledger"]
    return str(network["ipam"]["config"][0]["gateway"])


# --- Redis, for real: compose's command line on the shipped redis.conf -------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def compose_redis(compose: dict[str, Any], tmp_path: Path) -> Iterator[tuple[int, str]]:
    """redis-server started with compose's arguments: the shipped conf, the password, and the
    container-only bind and dir pointed at loopback and ``tmp_path``; plus a free port."""
    server = require_tool("redis-server")
    password = canary("deploy-compose-redis")
    args = list(compose["services"]["redis"]["command"])
    args[0], args[1] = server, str(DEPLOY / "redis.conf")
    args[args.index("--bind") + 1] = "127.0.0.1"
    args[args.index("--dir") + 1] = str(tmp_path)
    args[args.index("--requirepass") + 1] = password
    port = _free_port()
    process = subprocess.Popen(
        [*args, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        client = Redis(port=port, password=password, socket_timeout=2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except ConnectionError:
                assert process.poll() is None, "redis-server refused the configuration"
                assert time.monotonic() < deadline, "redis-server did not answer"
                time.sleep(0.05)
        client.close()
        yield port, password
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_redis_starts_on_the_conf_with_aof_noeviction_and_a_password(
    compose_redis: tuple[int, str], tmp_path: Path
) -> None:
    port, password = compose_redis
    with Redis(port=port, password=password, socket_timeout=2, decode_responses=True) as client:
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("dir") == {"dir": str(tmp_path)}
    assert (tmp_path / "appendonlydir").is_dir(), "the AOF lives in the data volume"
    once = Retry(NoBackoff(), 0)  # a refusal is the answer: no retries
    with (
        Redis(port=port, socket_timeout=2, retry=once) as anonymous,
        pytest.raises(AuthenticationError),
    ):
        anonymous.ping()
    with (
        Redis(port=port, password="wrong", socket_timeout=2, retry=once) as wrong,
        pytest.raises((AuthenticationError, ResponseError)),
    ):
        wrong.ping()


# --- docker compose config, where the plugin exists --------------------------------------------


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    probe = (
        subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30, check=False)
        if docker
        else None
    )
    if probe is None or probe.returncode != 0:
        # Not even under CI: CI is a fresh machine that may lack the plugin too; the static
        # checks above are what holds there.
        pytest.skip("the docker compose plugin is not installed")
    deploy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, deploy)
    values = env_file(ENV_EXAMPLE)
    values.update(synthetic_env(CONFIG.read_text(encoding="utf-8")))
    values["POSTGRES_PASSWORD"] = canary("deploy-compose-pg")
    values["REDIS_PASSWORD"] = canary("deploy-compose-redis")
    env = deploy / "hookledger.env"
    env.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    compose_file = str(deploy / "compose.yaml")
    result = subprocess.run(
        [docker, "compose", "-f", compose_file, "--env-file", str(env), "config", "--format=json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    assert set(resolved["services"]) == {*HOOKLEDGER, "db", "redis"}
    assert resolved["services"]["worker"]["deploy"]["replicas"] >= 2
