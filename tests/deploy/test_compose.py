"""deploy/compose.yaml, its env file example, hookledger.toml and redis.conf.

Checked here without Docker, for what the file means once compose has read it (YAML merged,
variables interpolated as compose does): the services and what each runs (commands parsed by
the real CLI), the config and conf files each mounts, health-gated start order, database and
Redis URLs that, read as hookledger reads them, reach the db and redis services with the
credentials those are given, the worker's scaling and stop grace, Redis on the shipped
redis.conf (started for real from compose's own command line, with the container-only options
pointed at loopback and a temporary directory) and its healthcheck run against it,
PostgreSQL's volume and health check, every password coming from the environment, and an env
example whose secrets are all empty. ``docker compose config`` runs only where the compose
plugin works; it is missing on the development machine and may be on CI, so there the static
checks are what holds.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import re
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ConnectionError, ResponseError
from redis.retry import Retry

from app.settings import parse_config
from app.store.db import make_engine
from tests.canary import canary
from tests.deploy.tools import (
    DEPLOY,
    REPO,
    cli_args,
    cli_command,
    env_file,
    job_timeout_s,
    load_yaml,
    require_tool,
    synthetic_env,
    toml_env_refs,
    walk,
)

COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / "hookledger.env.example"
CONFIG = DEPLOY / "hookledger.toml"
HOOKLEDGER = {"web": "web", "worker": "worker", "sweeper": "sweeper"}
# Variables of the env example that are not secrets and may carry a value.
NOT_SECRET = {"HOOKLEDGER_LOG_LEVEL", "HOOKLEDGER_LOG_FORMAT"}
# What `docker compose --env-file deploy/hookledger.env` gives compose itself.
COMPOSE_ENV = {
    "POSTGRES_PASSWORD": canary("deploy-compose-pg"),
    "REDIS_PASSWORD": canary("deploy-compose-redis"),
}
# $$, $VAR, ${VAR}, and ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}.
INTERPOLATION = re.compile(
    r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))"
)
PGDATA = "/var/lib/postgresql/data"  # the postgres image's data directory unless PGDATA is set


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = load_yaml(COMPOSE)
    assert isinstance(document, dict)
    return document


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """``value`` as compose interpolates it from ``env``: ``$$`` is a literal ``$``; a
    ``:-``/``-`` default stands in for a variable that is unset (or, with the colon, empty);
    a ``:?``/``?`` variable so missing raises ``ValueError`` with its message, as compose
    refuses to start."""

    def one(match: re.Match[str]) -> str:
        escaped, name, operator, argument, bare = match.groups()
        if escaped:
            return "$"
        name = name or bare
        value = env.get(name)
        missing = value is None or (value == "" and operator is not None and ":" in operator)
        if missing and operator is not None and operator.endswith("?"):
            raise ValueError(f"{name}: {argument}")
        if missing and operator is not None:
            return argument
        return value or ""

    return INTERPOLATION.sub(one, value)


def interpolated(document: Any, env: Mapping[str, str]) -> Any:
    """Every string of a parsed compose file interpolated from ``env``."""
    if isinstance(document, dict):
        return {key: interpolated(value, env) for key, value in document.items()}
    if isinstance(document, list):
        return [interpolated(value, env) for value in document]
    return interpolate(document, env) if isinstance(document, str) else document


def mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """A service's volumes (short syntax) as target -> (source, read-only); a source is a
    named volume, or a host path relative to deploy/."""
    found = {}
    for volume in service.get("volumes", []):
        source, target, *mode = volume.split(":")
        found[target] = (source, "ro" in ",".join(mode).split(","))
    return found


def _seconds(duration: str) -> float:
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration):
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[unit]
    assert total > 0, f"unreadable duration {duration!r}"
    return total


def test_the_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {*HOOKLEDGER, "migrate", "db", "redis"}


def test_the_schema_is_upgraded_before_any_process_starts(compose: dict[str, Any]) -> None:
    migrate = compose["services"]["migrate"]
    assert cli_command(migrate["command"]) == "db"
    assert cli_args(migrate["command"]).db_command == "upgrade"
    assert migrate["image"] == compose["services"]["web"]["image"]
    assert migrate["environment"] == compose["services"]["web"]["environment"]  # same database
    assert migrate["restart"] == "no"  # it runs once per `up`
    assert set(migrate["depends_on"]) == {"db", "redis"}


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
    # The secrets: the file the example becomes once filled in.
    assert [DEPLOY / f for f in spec["env_file"]] == [ENV_EXAMPLE.with_suffix("")]
    # The config: deploy/hookledger.toml, mounted read-only where the process reads it.
    source, read_only = mounts(spec)[spec["environment"]["HOOKLEDGER_CONFIG"]]
    assert (DEPLOY / source).resolve() == CONFIG and read_only
    # Started once PostgreSQL and Redis answer their health checks, which they have, and the
    # schema is this release's (the migrate service ran to completion).
    assert set(spec["depends_on"]) == {"db", "redis", "migrate"}
    for dependency, condition in spec["depends_on"].items():
        if dependency == "migrate":
            assert condition == {"condition": "service_completed_successfully"}
            continue
        assert condition == {"condition": "service_healthy"}
        assert compose["services"][dependency]["healthcheck"]["test"], dependency
    assert spec["read_only"] is True
    assert "/tmp" in spec["tmpfs"]
    assert spec["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in spec["security_opt"]
    assert spec["restart"] in {"always", "unless-stopped"}


@pytest.mark.parametrize("service", HOOKLEDGER)
def test_hookledger_services_reach_postgresql_and_redis_as_they_are_set_up(
    compose: dict[str, Any], service: str
) -> None:
    """The URLs, read as hookledger reads them, name the db and redis services on their
    ports, with the user, database and passwords those services are given."""
    resolved = interpolated(compose, COMPOSE_ENV)
    services = resolved["services"]
    environment = services[service]["environment"]
    engine = make_engine(environment["HOOKLEDGER_DATABASE_URL"], pool_size=1)
    try:
        url, dialect = engine.url, engine.dialect.name
    finally:
        engine.dispose()
    db = services["db"]["environment"]
    assert dialect == "postgresql"
    assert services[url.host]["image"].startswith("postgres:")
    assert (url.port or 5432) == 5432  # the port PostgreSQL listens on in its image
    assert (url.username, url.database) == (db["POSTGRES_USER"], db["POSTGRES_DB"])
    assert url.password == db["POSTGRES_PASSWORD"]
    client = Redis.from_url(environment["HOOKLEDGER_REDIS_URL"])
    try:
        redis = client.connection_pool.connection_kwargs
    finally:
        client.close()
    command = services["redis"]["command"]
    assert services[redis["host"]]["image"].startswith("redis:")
    assert redis["port"] == 6379  # the port redis-server listens on by default
    assert redis["password"] == command[command.index("--requirepass") + 1]


def test_web_is_published_on_loopback_only_and_keeps_the_image_healthcheck(
    compose: dict[str, Any],
) -> None:
    web = compose["services"]["web"]
    (published,) = web["ports"]
    address, _, container_port = published.rpartition(":")
    host_ip, _, _host_port = address.rpartition(":")
    assert ipaddress.ip_address(host_ip.strip("[]")).is_loopback
    assert int(container_port) == cli_args(web["command"]).port
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
    # The data directory is a named volume: it outlives the container.
    environment = db["environment"]
    source, _ = mounts(db)[environment.get("PGDATA", PGDATA)]
    assert source in compose["volumes"]
    # Healthy once PostgreSQL accepts connections to hookledger's database, as its user.
    kind, *test = db["healthcheck"]["test"]
    argv = shlex.split(test[0]) if kind == "CMD-SHELL" else test
    assert argv[0] == "pg_isready"
    options = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert options == {"-U": environment["POSTGRES_USER"], "-d": environment["POSTGRES_DB"]}
    # No default password: without POSTGRES_PASSWORD compose refuses to start.
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        interpolate(environment["POSTGRES_PASSWORD"], {})


def test_redis_runs_on_the_shipped_redis_conf(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert re.fullmatch(r"redis:\d+(\.\d+)*(-[a-z]+)?", redis["image"])
    command = redis["command"]
    assert command[0] == "redis-server"
    volumes = mounts(redis)
    # The conf redis-server is given is deploy/redis.conf, read-only; its data is a volume.
    source, read_only = volumes[command[1]]
    assert (DEPLOY / source).resolve() == DEPLOY / "redis.conf" and read_only
    assert volumes[command[command.index("--dir") + 1]][0] in compose["volumes"]
    overridden = {arg.removeprefix("--") for arg in command[2:] if arg.startswith("--")}
    assert overridden == {"bind", "dir", "requirepass"}, "durability settings stay the conf's"
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


def test_every_password_in_compose_comes_from_its_environment(compose: dict[str, Any]) -> None:
    """Interpolated, every credential compose hands out (in a URL, a *PASSWORD*, *SECRET* or
    *TOKEN* variable, redis-server's --requirepass) is a value compose was given: none is
    written into the file."""
    resolved = interpolated(compose, COMPOSE_ENV)
    found = []
    for path, value in walk(resolved):
        if not isinstance(value, str):
            continue
        if "://" in value and (password := urlsplit(value).password) is not None:
            found.append((path, password))
        if re.search(r"PASSWORD|SECRET|TOKEN", path.rsplit(".", 1)[-1]):
            found.append((path, value))
    for name, service in resolved["services"].items():
        command = service.get("command", [])
        found += [
            (f"services.{name}.command", value)
            for flag, value in itertools.pairwise(command)
            if flag == "--requirepass"
        ]
    assert {path for path, _ in found} >= {
        "services.web.environment.HOOKLEDGER_DATABASE_URL",
        "services.web.environment.HOOKLEDGER_REDIS_URL",
        "services.db.environment.POSTGRES_PASSWORD",
        "services.redis.environment.REDIS_PASSWORD",
        "services.redis.command",
    }
    written = [path for path, value in found if value not in COMPOSE_ENV.values()]
    assert written == []


def test_every_interpolated_variable_is_in_the_env_example(compose: dict[str, Any]) -> None:
    referenced = {
        match.group(2) or match.group(5)
        for _path, value in walk(compose)
        if isinstance(value, str)
        for match in INTERPOLATION.finditer(value)
        if not match.group(1)
    }
    assert referenced == set(COMPOSE_ENV)
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
    password = COMPOSE_ENV["REDIS_PASSWORD"]
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


def test_the_redis_healthcheck_passes_with_the_password_and_only_with_it(
    compose: dict[str, Any], compose_redis: tuple[int, str], tmp_path: Path
) -> None:
    """The healthcheck's shell command, run against the server above with the environment
    compose gives the container."""
    port, _password = compose_redis
    redis = compose["services"]["redis"]
    kind, script = redis["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    script = interpolate(script, COMPOSE_ENV)  # compose's `$$` is the container shell's `$`
    container_env = interpolated(redis["environment"], COMPOSE_ENV)
    # In the container redis-cli reaches the server on the default port; here, on the test's.
    shim = tmp_path / "bin" / "redis-cli"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nexec {require_tool("redis-cli")} -p {port} "$@"\n')
    shim.chmod(0o755)

    def healthcheck(env: dict[str, str]) -> int:
        path = {"PATH": f"{shim.parent}:/usr/bin:/bin"}
        result = subprocess.run(
            ["sh", "-c", script], env={**env, **path}, capture_output=True, timeout=30
        )
        return result.returncode

    assert healthcheck(container_env) == 0
    assert healthcheck({**container_env, "REDIS_PASSWORD": "wrong"}) != 0
    assert healthcheck({}) != 0


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
    values.update(COMPOSE_ENV)
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
