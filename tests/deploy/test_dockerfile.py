"""deploy/Dockerfile, checked without Docker (no registry is reachable here to build it).

The Dockerfile is parsed as Docker's parser reads it (directives, comments, continuations,
ENV's quoting and variables) and checked for what it means: known instructions only; every base
image pinned to a version; a non-root, numeric USER before ENTRYPOINT and CMD; no ADD; no secret
or config baked in; every COPY source present in the repository and let into the build context
by the root .dockerignore; a Python started with the image's environment is unbuffered and
writes no bytecode (run here); `hookledger` found on PATH in the environment the build stage
installed; CMD a `web` command the real parser accepts, on the EXPOSEd port; a HEALTHCHECK
whose script (traced back through its COPY) asks /healthz on that port, run here against a real
server.
What this cannot show: that the image builds and starts (pip resolving the dependencies, the
tini package, file ownership); that needs `docker build` on a machine that reaches Docker Hub.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

from tests.deploy.tools import DEPLOY, REPO, cli_args, load_yaml

DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
KNOWN = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}  # fmt: skip
SECRETISH = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL|AUTH|PRIVATE|_URL$", re.IGNORECASE)
VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class Instruction:
    line: int
    name: str
    args: str

    def exec_form(self) -> list[str]:
        """The JSON (exec form) arguments; fails if they are in shell form."""
        value = json.loads(self.args)
        assert isinstance(value, list), f"line {self.line}: {self.name} is not exec form"
        return [str(v) for v in value]


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions as Docker reads them: parser directives and comments dropped, lines ending
    in a backslash joined (comment lines inside a continuation skipped, as Docker does)."""
    instructions: list[Instruction] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        start, line = index + 1, lines[index].strip()
        index += 1
        if not line or line.startswith("#"):
            continue
        parts = []
        while line.endswith("\\"):
            parts.append(line[:-1].strip())
            while index < len(lines) and (
                not lines[index].strip() or lines[index].strip().startswith("#")
            ):
                index += 1
            line = lines[index].strip() if index < len(lines) else ""
            index += 1
        parts.append(line)
        name, _, args = " ".join(p for p in parts if p).partition(" ")
        instructions.append(Instruction(start, name.upper(), args.strip()))
    return instructions


def _options(args: str) -> tuple[dict[str, str], str]:
    """``--flag=value`` options in front of an instruction's arguments, and the rest."""
    options: dict[str, str] = {}
    rest = args
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        key, _, value = option[2:].partition("=")
        options[key] = value
        rest = rest.strip()
    return options, rest


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The instructions of each build stage (each starts with its FROM)."""
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.name == "FROM":
            result.append([])
        assert result, f"line {instruction.line}: {instruction.name} before FROM"
        result[-1].append(instruction)
    return result


def image_env(stage: list[Instruction]) -> dict[str, str]:
    """The environment the ENV instructions of ``stage`` give its containers. Each
    ``NAME=value`` is read as Docker reads it (quotes removed) and expanded against the
    environment before its instruction (``$NAME``, ``${NAME}``); a name only the base image
    sets (PATH) keeps its reference."""
    env: dict[str, str] = {}
    for instruction in (i for i in stage if i.name == "ENV"):
        before = dict(env)
        for pair in shlex.split(instruction.args):
            name, sep, value = pair.partition("=")
            assert sep, f"line {instruction.line}: use ENV NAME=value"
            env[name] = _expand(value, before)
    return env


def _expand(value: str, env: dict[str, str]) -> str:
    """``value`` with ``$NAME`` and ``${NAME}`` replaced from ``env``; other names kept."""
    return VARIABLE.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), value)


def _copies(stage: list[Instruction]) -> list[tuple[dict[str, str], list[str], str]]:
    """Each COPY of ``stage`` as (options, sources, destination)."""
    found = []
    for instruction in (i for i in stage if i.name == "COPY"):
        options, args = _options(instruction.args)
        *sources, destination = args.split()
        found.append((options, sources, destination))
    return found


def _duration_s(value: str) -> float:
    """A HEALTHCHECK duration (``15s``, ``1m30s``, ``500ms``) in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"unreadable duration {value!r}"
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[u] for n, u in parts)


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if i < len(pattern) and pattern[i] == "/":
                i += 1
                out += "/?" if not out.endswith("/?") else ""
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(c, re.escape(c))
        i += 1
    return re.compile(out)


def build_context_admits(path: str, patterns: list[str]) -> bool:
    """Whether the build context contains ``path`` under these .dockerignore patterns: the
    last pattern matching the path or one of its parent directories decides; ``!`` re-admits."""
    parents = [path]
    while "/" in parents[-1]:
        parents.append(parents[-1].rsplit("/", 1)[0])
    admitted = True
    for raw in patterns:
        negated = raw.startswith("!")
        pattern = raw[1:] if negated else raw
        regex = _dockerignore_regex(pattern.strip("/"))
        if any(regex.fullmatch(candidate) for candidate in parents):
            admitted = negated
    return admitted


def dockerignore() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def final(instructions: list[Instruction]) -> list[Instruction]:
    return stages(instructions)[-1]


def _first(stage: list[Instruction], name: str) -> Instruction:
    found = [i for i in stage if i.name == name]
    assert len(found) == 1, f"expected one {name} in the final stage, found {len(found)}"
    return found[0]


def test_the_parser_reads_continuations_and_skips_comments() -> None:
    text = '# syntax=docker/dockerfile:1\nFROM a:1 AS b\nRUN x \\\n  # note\n  && y\nCMD ["z"]\n'
    parsed = parse_dockerfile(text)
    assert [(i.name, i.args) for i in parsed] == [
        ("FROM", "a:1 AS b"),
        ("RUN", "x && y"),
        ("CMD", '["z"]'),
    ]


def test_only_known_instructions(instructions: list[Instruction]) -> None:
    unknown = [(i.line, i.name) for i in instructions if i.name not in KNOWN]
    assert not unknown


def test_base_images_are_pinned_python_3_11_slim(instructions: list[Instruction]) -> None:
    names = set()
    for instruction in (i for i in instructions if i.name == "FROM"):
        _, args = _options(instruction.args)
        image, _, alias = args.partition(" AS ")
        image = image.strip()
        names.add(alias.strip())
        if image in names:
            continue  # FROM an earlier stage
        # A release tag (python:3.11.14-slim-bookworm), never latest nor a bare name.
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", image), (
            f"line {instruction.line}: {image}"
        )


def test_no_add_and_no_remote_sources(instructions: list[Instruction]) -> None:
    # COPY does everything this image needs; ADD would fetch URLs and unpack archives.
    assert not [i.line for i in instructions if i.name == "ADD"]
    for instruction in instructions:
        assert not re.search(r"\b(https?|git|ftp)://|git@", instruction.args) or (
            instruction.name == "RUN"  # apt-get talks to its mirrors; nothing is downloaded raw
            and not re.search(r"\b(curl|wget)\b", instruction.args)
        ), f"line {instruction.line}: {instruction.args}"


def test_no_secret_is_baked_in(instructions: list[Instruction]) -> None:
    for instruction in instructions:
        if instruction.name not in {"ENV", "ARG", "LABEL"}:
            continue
        if instruction.name == "ENV":  # the legacy `ENV NAME value` form would hide the name
            assert "=" in instruction.args, f"line {instruction.line}: use ENV NAME=value"
        for name in re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_.-]*)=", instruction.args):
            assert not SECRETISH.search(name), f"line {instruction.line}: {name} looks secret"
        assert not re.search(r"://[^/\s:@]+:[^@\s]+@", instruction.args), instruction.line


def test_the_final_stage_runs_as_a_numeric_non_root_user(final: list[Instruction]) -> None:
    names = [i.name for i in final]
    user = _first(final, "USER")
    uid, _, gid = user.args.partition(":")
    assert uid.isdigit(), "numeric, so Kubernetes' runAsNonRoot can check it"
    assert int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)
    assert names.index("USER") < names.index("ENTRYPOINT")
    assert names.index("USER") < names.index("CMD")
    # The manifests run as the same user (deploy/k8s).
    for name in ("web", "worker", "sweeper"):
        manifest = load_yaml(DEPLOY / "k8s" / f"{name}-deployment.yaml")
        assert manifest["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid)


def test_the_image_environment_parses_as_docker_reads_it() -> None:
    text = 'FROM a:1\nENV A=1 B="two words"\nENV PATH=/x/bin:$PATH C=${A}0 A=3\n'
    env = image_env(parse_dockerfile(text))
    assert env == {"A": "3", "B": "two words", "PATH": "/x/bin:$PATH", "C": "10"}


def test_python_in_the_image_runs_unbuffered_without_writing_bytecode(
    final: list[Instruction],
) -> None:
    python_env = {k: v for k, v in image_env(final).items() if k.startswith("PYTHON")}
    probe = "import sys; print(sys.flags.dont_write_bytecode, sys.stdout.write_through)"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env=python_env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    # Unbuffered: a log line reaches `docker logs` when written, not when a buffer fills.
    assert result.stdout.split() == ["1", "True"]


def test_no_config_is_baked_in(final: list[Instruction]) -> None:
    """The processes read the config a deployment mounts, or stop (exit 2): never one of the
    image's own, and never the demo config's public secrets."""
    config = image_env(final)["HOOKLEDGER_CONFIG"]
    assert config.startswith("/")
    for *_, destination in _copies(final):
        assert not config.startswith(destination.rstrip("/") + "/") and config != destination


def test_entrypoint_is_hookledger_and_cmd_is_the_web_edge(final: list[Instruction]) -> None:
    entrypoint = _first(final, "ENTRYPOINT").exec_form()
    assert entrypoint[-1] == "hookledger"
    assert entrypoint[:2] == ["tini", "--"], "an init that forwards SIGTERM and reaps children"
    web = cli_args(_first(final, "CMD").exec_form())
    assert web.command == "web"
    assert web.host == "0.0.0.0"
    assert _first(final, "EXPOSE").args.split() == [str(web.port)]


def test_hookledger_is_found_in_the_environment_the_build_stage_installed(
    instructions: list[Instruction], final: list[Instruction]
) -> None:
    """ENTRYPOINT names ``hookledger``: the first directory of the image's PATH is the bin
    directory of an environment copied whole from the build stage, where this project was
    installed into it with that environment's own pip."""
    build = stages(instructions)[0]
    build_name = build[0].args.partition(" AS ")[2].strip()
    copied = [
        destination.rstrip("/")
        for options, _sources, destination in _copies(final)
        if options.get("from") == build_name
    ]
    first = image_env(final)["PATH"].split(":")[0]
    environments = [d for d in copied if first == f"{d}/bin"]
    assert environments, f"PATH starts with {first}, which no COPY --from={build_name} fills"
    environment = environments[0]
    installs = [
        shlex.split(command)
        for run in build
        if run.name == "RUN"
        for command in run.args.split("&&")
    ]
    assert [f"{environment}/bin/pip", "install", "."] in installs


def test_copy_sources_exist_and_are_in_the_build_context(instructions: list[Instruction]) -> None:
    patterns = dockerignore()
    copied = []
    for options, sources, _destination in _copies(instructions):
        if "from" in options:
            continue
        for source in sources:
            assert (REPO / source).exists(), f"{source} is missing"
            assert build_context_admits(source, patterns), f"{source} is .dockerignored"
            copied.append(source)
    assert {"pyproject.toml", "README.md", "app", "workers"} <= set(copied)


def test_the_build_context_holds_the_package_and_nothing_private() -> None:
    patterns = dockerignore()
    needed = ["pyproject.toml", "README.md", "deploy/docker/healthcheck.py"]
    for package in ("app", "workers"):
        needed += [
            str(p.relative_to(REPO))
            for p in (REPO / package).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        ]
    refused = [p for p in needed if not build_context_admits(p, patterns)]
    assert not refused
    assert {"app/demo.toml", "app/openapi.json", "app/py.typed"} <= set(needed)  # package data
    private = [
        ".env",
        "hookledger.toml",
        "var/hookledger.db",
        "var/redis/appendonly.aof",
        ".venv/bin/python",
        ".git/config",
        "tests/support.py",
        "bench/ingest.py",
        "deploy/hookledger.env",
        "hookledger.egg-info/PKG-INFO",
        "app/__pycache__/cli.cpython-311.pyc",
        "workers/__pycache__/jobs.cpython-311.pyc",
    ]
    admitted = [p for p in private if build_context_admits(p, patterns)]
    assert not admitted


def test_the_dockerignore_matcher_follows_dockers_rules() -> None:
    patterns = ["*", "!app/", "**/__pycache__", "!keep/**/x.txt"]
    assert build_context_admits("app/cli/__init__.py", patterns)
    assert not build_context_admits("app/__pycache__/cli.pyc", patterns)
    assert not build_context_admits("bench/x.py", patterns)
    assert build_context_admits("keep/a/b/x.txt", patterns)
    assert not build_context_admits("keep/a/b/y.txt", patterns)


# --- the HEALTHCHECK script -------------------------------------------------------------------


def _healthcheck(final: list[Instruction]) -> tuple[dict[str, str], list[str]]:
    """The HEALTHCHECK's options and its command (exec form)."""
    options, command = _options(_first(final, "HEALTHCHECK").args)
    kind, _, argv = command.partition(" ")
    assert kind == "CMD", "a check that runs, in exec form"
    return options, [str(arg) for arg in json.loads(argv)]


def _healthcheck_source(final: list[Instruction]) -> Path:
    """The repository file the HEALTHCHECK runs: its script traced back through the COPY that
    puts it into the final stage."""
    script = _healthcheck(final)[1][-1]
    sources = [
        source
        for options, copied, destination in _copies(final)
        if "from" not in options
        for source in copied
        if script in (destination, destination.rstrip("/") + "/" + Path(source).name)
    ]
    assert len(sources) == 1, f"{script} is not copied into the final stage"
    return REPO / sources[0]


@pytest.fixture(scope="module")
def healthcheck(final: list[Instruction]) -> ModuleType:
    """The script the image's HEALTHCHECK runs, imported."""
    spec = importlib.util.spec_from_file_location(
        "hookledger_image_healthcheck", _healthcheck_source(final)
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pid_1(final: list[Instruction]) -> list[str]:
    """What the container runs as PID 1 by default: ENTRYPOINT then CMD."""
    return [*_first(final, "ENTRYPOINT").exec_form(), *_first(final, "CMD").exec_form()]


def test_the_healthcheck_answers_before_docker_gives_up_on_it(
    final: list[Instruction], healthcheck: ModuleType
) -> None:
    options, _command = _healthcheck(final)
    assert {"interval", "timeout", "start-period", "retries"} <= set(options)
    assert int(options["retries"]) >= 1
    # The script's own HTTP timeout ends first, so an unanswered /healthz is a clean failure.
    timeout = _duration_s(options["timeout"])
    assert healthcheck.TIMEOUT_S < timeout < _duration_s(options["interval"])


def test_the_healthcheck_asks_the_port_the_image_serves_on(
    final: list[Instruction], healthcheck: ModuleType, pid_1: list[str]
) -> None:
    exposed = int(_first(final, "EXPOSE").args.split()[0].split("/")[0])
    assert healthcheck.web_address(pid_1) == ("127.0.0.1", exposed)
    # `docker run IMAGE worker` (or sweeper) replaces CMD: no HTTP server, nothing to ask.
    entrypoint = _first(final, "ENTRYPOINT").exec_form()
    for command in ("worker", "sweeper"):
        assert healthcheck.web_address([*entrypoint, command]) is None


@pytest.fixture
def health_server() -> Iterator[tuple[int, dict[str, int]]]:
    """A loopback server answering GET /healthz with the status in ``state['status']``."""
    state = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(state["status"] if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_healthcheck_reads_the_port_from_any_web_command_line(
    healthcheck: ModuleType,
) -> None:
    web = ["tini", "--", "hookledger", "web", "--host", "0.0.0.0", "--port", "9001"]
    assert healthcheck.web_address(web) == ("127.0.0.1", 9001)
    assert healthcheck.web_address(["/opt/hookledger/bin/hookledger", "web"]) == ("127.0.0.1", 8000)
    assert healthcheck.web_address(["hookledger", "web", "--port=8123"]) == ("127.0.0.1", 8123)
    assert healthcheck.web_address(["python", "-c", "pass"]) is None


def test_the_healthcheck_asks_healthz(
    healthcheck: ModuleType, pid_1: list[str], health_server: tuple[int, dict[str, int]]
) -> None:
    port, state = health_server
    argv = list(pid_1)  # the image's own command line, serving on the test server's port
    argv[argv.index("--port") + 1] = str(port)
    assert healthcheck.check(argv, timeout_s=2) == 0
    state["status"] = 500
    assert healthcheck.check(argv, timeout_s=2) == 1
    assert healthcheck.check(["tini", "--", "hookledger", "worker"], timeout_s=2) == 0


def test_the_healthcheck_fails_when_nothing_listens(healthcheck: ModuleType) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()  # the port is now closed
    assert healthcheck.check(["hookledger", "web", "--port", str(port)], timeout_s=2) == 1
    assert healthcheck.check(["hookledger", "web", "--port", "not-a-port"], timeout_s=2) == 1
