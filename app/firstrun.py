"""What ``hookledger up`` makes on first start and prints on every start.

Where the configuration sets no admin token (``HOOKLEDGER_ADMIN_TOKEN``) and no accountants'
API key (``[api_keys.*]``), ``up`` makes them once and keeps them in ``./var/credentials.json``
(mode 0600), so the console, the admin API and the accountants' API answer from the first
minute and keep the same credentials across restarts. They reach the processes ``up`` starts
through the environment (``HOOKLEDGER_ADMIN_TOKEN``, ``HOOKLEDGER_API_KEY``).

``welcome`` is the text ``up`` prints once everything answers: where it listens, one signed
sample callback per source, and one working command for ops and for accountants.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path

from app.samples import sample_curl
from app.settings import Settings

CREDENTIALS_FILE = "credentials.json"


@dataclass(frozen=True, slots=True)
class Credentials:
    admin_token: str
    api_key: str | None  # None: the config has its own [api_keys]
    api_secret: str | None
    made: bool  # made by this start (first run), not read back


def ensure_credentials(settings: Settings, var_dir: Path) -> Credentials:
    """The admin token and an accountants' API key for ``up``: the configured ones where the
    configuration has them, else those kept in ``var_dir``, else new ones, written there with
    mode 0600 before they are used."""
    path = var_dir / CREDENTIALS_FILE
    kept: dict[str, str] = {}
    if path.is_file():
        path.chmod(0o600)
        kept = json.loads(path.read_text(encoding="utf-8"))
    made = False
    if not settings.admin_token and not kept.get("admin_token"):
        kept["admin_token"] = "adm_" + secrets.token_urlsafe(24)
        made = True
    needs_key = not settings.file.api_keys
    if needs_key and not (kept.get("api_key") and kept.get("api_secret")):
        kept["api_key"] = "ak_" + secrets.token_hex(8)
        kept["api_secret"] = "as_" + secrets.token_urlsafe(32)
        made = True
    if made:  # only what up made: a configured token is never copied to disk
        _write_private(path, kept)
    return Credentials(
        admin_token=settings.admin_token or kept["admin_token"],
        api_key=kept["api_key"] if needs_key else None,
        api_secret=kept["api_secret"] if needs_key else None,
        made=made,
    )


def _write_private(path: Path, data: dict[str, str]) -> None:
    """Write ``data`` as JSON readable by the owner alone (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2)
        out.write("\n")
    temporary.replace(path)


def child_environment(credentials: Credentials) -> dict[str, str]:
    """The variables that hand ``credentials`` to the processes ``up`` starts."""
    env = {"HOOKLEDGER_ADMIN_TOKEN": credentials.admin_token}
    if credentials.api_key and credentials.api_secret:
        env["HOOKLEDGER_API_KEY"] = f"{credentials.api_key}:{credentials.api_secret}"
    return env


def accountant_command(base_url: str, key: str, secret: str, path: str) -> str:
    """A shell command that signs ``GET path`` at run time (the signature carries a timestamp
    that is good for 300 s) with ``openssl`` and sends it with ``curl``."""
    q_secret = shlex.quote(secret)
    return (
        f"ts=$(date +%s000); sig=$(printf '%s' \"${{ts}}GET{path}\" "
        f"| openssl dgst -sha256 -hmac {q_secret} -r | cut -d' ' -f1); "
        f"curl -sS -H 'X-API-Key: {key}' -H \"X-API-Timestamp: $ts\" "
        f'-H "X-API-Signature: $sig" {shlex.quote(base_url + path)}'
    )


def welcome(
    settings: Settings,
    credentials: Credentials,
    *,
    base_url: str,
    redis_url: str,
    private_redis: bool,
    workers: int,
    database: str,
) -> str:
    """The text ``up`` prints once its processes answer."""
    lines = [
        "",
        f"hookledger is up: {base_url}   (config: {settings.config_path})",
        f"  database: {database}",
        f"  redis:    {redis_url}{'  (private, data in var/redis)' if private_redis else ''}",
        f"  web, {workers} worker(s) and the sweeper run here; Ctrl-C stops them all.",
        "",
        "Integrators: a signed sample callback per source (run one twice: the second answer is",
        "a duplicate; `hookledger sample` prints fresh ones, timestamped signatures last 5 min):",
        "",
    ]
    for name, source in sorted(settings.sources.items()):
        lines += [f"# {name} ({source.kind}, auth {source.auth})"]
        lines += [sample_curl(name, source, base_url), ""]
    token = credentials.admin_token
    where = "HOOKLEDGER_ADMIN_TOKEN" if settings.admin_token else "./var/credentials.json"
    lines += [
        f"Ops: the console is {base_url}/console (log in with the admin token); the admin API:",
        f"  admin token: {token}   (kept in {where})",
        f"  curl -sS -H 'Authorization: Bearer {token}' {base_url}/admin/events",
        "",
    ]
    if credentials.api_key and credentials.api_secret:
        lines += [
            "Accountants: the signed transactions API (key reads every account):",
            f"  API key: {credentials.api_key}   secret: {credentials.api_secret}"
            "   (kept in ./var/credentials.json)",
            "  "
            + accountant_command(
                base_url,
                credentials.api_key,
                credentials.api_secret,
                "/account/v1/transactions",
            ),
            "",
        ]
    else:
        names = ", ".join(sorted(settings.file.api_keys))
        lines += [f"Accountants: use the API keys of the config ({names}).", ""]
    return "\n".join(lines)
