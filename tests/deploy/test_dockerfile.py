"""deploy/Dockerfile, checked without Docker (no registry is reachable here to build it).

The Dockerfile is parsed as Docker's parser reads it (directives, comments, continuations)
and checked: known instructions only; every base image pinned to a version; a non-root,
numeric USER before ENTRYPOINT and CMD; no ADD; no secret baked in through ENV or ARG; every
COPY source present in the repository and let into the build context by the root
.dockerignore; the entry point is the `hookledger` command and CMD a command its parser
accepts; a HEALTHCHECK whose script really checks /healthz (run here against a real server).
What this cannot show: that the image builds and starts (pip resolving the dependencies, the
tini package, file ownership); that needs `docker build` on a machine that reaches Docker Hub.
"""

from __future__ import annotations

import importlib.util
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType

import pytest

from tests.deploy.tools import DEPLOY, REPO, cli_command, load_yaml

DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
KNOWN = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}  # fmt: skip
SECRETISH = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL|AUTH|PRIVATE|_URL$", re.IGNORECASE)


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


def test_python_does_not_write_bytecode_and_is_unbuffered(final: list[Instruction]) -> None:
    env = " ".join(i.args for i in final if i.name == "ENV")
    assert re.search(r"\bPYTHONDONTWRITEBYTECODE=1\b", env)
    assert re.search(r"\bPYTHONUNBUFFERED=1\b", env)
    # No config in the image: the processes read the mounted one, or stop (exit 2).
    assert "HOOKLEDGER_CONFIG=/etc/hookledger/hookledger.toml" in env


def test_entrypoint_is_hookledger_and_cmd_is_the_web_edge(final: list[Instruction]) -> None:
    entrypoint = _first(final, "ENTRYPOINT").exec_form()
    assert entrypoint[-1] == "hookledger"
    assert entrypoint[:2] == ["tini", "--"], "an init that forwards SIGTERM and reaps children"
    cmd = _first(final, "CMD").exec_form()
    assert cli_command(cmd) == "web"
    port = cmd[cmd.index("--port") + 1]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert _first(final, "EXPOSE").args.split() == [port]


def test_copy_sources_exist_and_are_in_the_build_context(instructions: list[Instruction]) -> None:
    patterns = dockerignore()
    copied = []
    for instruction in (i for i in instructions if i.name == "COPY"):
        options, args = _options(instruction.args)
        if "from" in options:
            continue
        *sources, _destination = args.split()
        for source in sources:
            assert (REPO / source).exists(), f"line {instruction.line}: {source} is missing"
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


def _healthcheck_module() -> ModuleType:
    path = DEPLOY / "docker" / "healthcheck.py"
    spec = importlib.util.spec_from_file_location("hookledger_image_healthcheck", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_healthcheck_runs_the_copied_script(final: list[Instruction]) -> None:
    options, command = _options(_first(final, "HEALTHCHECK").args)
    assert {"interval", "timeout", "start-period", "retries"} <= set(options)
    assert command.startswith("CMD ")
    argv = json.loads(command.removeprefix("CMD "))
    copies = [i.args.split()[-1] for i in final if i.name == "COPY"]
    assert argv[-1] in copies, "the HEALTHCHECK script is copied into the final stage"


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


def test_the_healthcheck_finds_the_web_port_in_pid_1s_command_line() -> None:
    module = _healthcheck_module()
    web = ["tini", "--", "hookledger", "web", "--host", "0.0.0.0", "--port", "9001"]
    assert module.web_address(web) == ("127.0.0.1", 9001)
    assert module.web_address(["/opt/hookledger/bin/hookledger", "web"]) == ("127.0.0.1", 8000)
    assert module.web_address(["hookledger", "web", "--port=8123"]) == ("127.0.0.1", 8123)
    assert module.web_address(["tini", "--", "hookledger", "worker"]) is None
    assert module.web_address(["tini", "--", "hookledger", "sweeper"]) is None
    assert module.web_address(["python", "-c", "pass"]) is None


def test_the_healthcheck_asks_healthz(health_server: tuple[int, dict[str, int]]) -> None:
    module = _healthcheck_module()
    port, state = health_server
    argv = ["tini", "--", "hookledger", "web", "--host", "0.0.0.0", "--port", str(port)]
    assert module.check(argv, timeout_s=2) == 0
    state["status"] = 500
    assert module.check(argv, timeout_s=2) == 1
    assert module.check(["tini", "--", "hookledger", "worker"], timeout_s=2) == 0


def test_the_healthcheck_fails_when_nothing_listens() -> None:
    module = _healthcheck_module()
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    server.server_close()  # the port is now closed
    assert module.check(["hookledger", "web", "--port", str(port)], timeout_s=2) == 1
    assert module.check(["hookledger", "web", "--port", "not-a-port"], timeout_s=2) == 1
