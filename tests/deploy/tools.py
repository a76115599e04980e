"""Helpers shared by the deploy/ tests: paths, a strict YAML loader, external tools, the CLI.

External tools (``systemd-analyze``, ``promtool``, ``redis-server``) are found on PATH. A
missing one skips the test that needs it, except under ``CI=true``, where it fails: CI installs
them (``.ci/run``), and a check that quietly skips there checks nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
IN_CI = os.environ.get("CI", "").lower() == "true"

# What deploy/hookledger.toml and the ConfigMap leave at its default unless they set it.
DEFAULT_JOB_TIMEOUT_S = 60
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def require_tool(name: str) -> str:
    """The path of executable ``name``; skip the test without it (fail under ``CI=true``)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if IN_CI:
            pytest.fail(f"{message}; CI must run this check (see .ci/run)", pytrace=False)
        pytest.skip(message)
    return path


def hookledger_executable() -> Path:
    """The ``hookledger`` console script of the environment running the tests."""
    beside = Path(sys.executable).with_name("hookledger")
    if beside.is_file():
        return beside
    found = shutil.which("hookledger")
    if found is None:
        pytest.fail("no hookledger console script: install the project (pip install -e .)")
    return Path(found)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor`: keys given beside it rightly override the anchor's
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml_documents(path: Path) -> list[Any]:
    """Every document of the YAML file at ``path``; a duplicate key is an error."""
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.load_all(stream, Loader=_UniqueKeyLoader) if doc is not None]


def load_yaml(path: Path) -> Any:
    """The single document of the YAML file at ``path``."""
    documents = load_yaml_documents(path)
    assert len(documents) == 1, f"{path}: expected one YAML document, found {len(documents)}"
    return documents[0]


def yaml_files() -> list[Path]:
    """Every .yml and .yaml file under deploy/, sorted."""
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yml", ".yaml"} and p.is_file())


def cli_args(args: Sequence[str]) -> argparse.Namespace:
    """``args`` as the ``hookledger`` command reads them: the real parser, defaults filled in.

    Fails the test, naming ``args``, if the CLI would refuse them (argparse exits with 2)."""
    try:
        return build_parser().parse_args(list(args))
    except SystemExit as exc:
        pytest.fail(f"`hookledger {' '.join(args)}` is not a valid command (exit {exc.code})")


def cli_command(args: Sequence[str]) -> str:
    """The ``hookledger`` subcommand ``args`` runs, after parsing them with the real parser."""
    return str(cli_args(args).command)


def expand_k8s(args: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """``args`` with Kubernetes' ``$(VAR)`` references replaced from the container's ``env``."""

    def one(arg: str) -> str:
        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            assert name in env, f"$({name}) in {arg!r} is not in the container's env"
            return env[name]

        return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, arg)

    return [one(arg) for arg in args]


def toml_env_refs(text: str) -> set[str]:
    """The environment variables a TOML config's values name as ``"${VAR}"``."""
    return {
        name
        for _path, value in walk(tomllib.loads(text))
        if isinstance(value, str)
        for name in ENV_REF.findall(value)
    }


def job_timeout_s(toml_text: str) -> int:
    """``processing.job_timeout_s`` of a TOML config (the default if it is not set)."""
    return int(
        tomllib.loads(toml_text).get("processing", {}).get("job_timeout_s", DEFAULT_JOB_TIMEOUT_S)
    )


def env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of an env file (systemd EnvironmentFile, compose env_file)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}:{number}: not KEY=VALUE: {raw!r}"
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"{path.name}:{number}: bad name {key!r}"
        assert key not in values, f"{path.name}:{number}: {key} is set twice"
        values[key] = value
    return values


def walk(value: Any) -> Iterator[tuple[str, Any]]:
    """Every (dotted path, scalar) in a nested structure of dicts and lists."""

    def inner(prefix: str, item: Any) -> Iterator[tuple[str, Any]]:
        if isinstance(item, dict):
            for key, child in item.items():
                yield from inner(f"{prefix}.{key}" if prefix else str(key), child)
        elif isinstance(item, list):
            for index, child in enumerate(item):
                yield from inner(f"{prefix}[{index}]", child)
        else:
            yield prefix, item

    return inner("", value)


def synthetic_env(toml_text: str) -> dict[str, str]:
    """A value for every ``${VAR}`` of a TOML config: canary secrets (tests/canary.py), in the
    Standard Webhooks form where a standard-webhooks source uses the variable."""
    from tests.canary import canary, canary_whsec

    whsec: set[str] = set()
    for source in tomllib.loads(toml_text).get("sources", {}).values():
        if source.get("auth") == "standard-webhooks":
            whsec |= {
                ref for secret in source.get("secrets", []) for ref in ENV_REF.findall(secret)
            }
    return {
        name: canary_whsec(f"deploy-{name}") if name in whsec else canary(f"deploy-{name}")
        for name in sorted(toml_env_refs(toml_text))
    }
