"""The container image's HEALTHCHECK: ``GET /healthz`` when the container runs ``hookledger web``.

Docker runs this inside the container. It reads what PID 1 runs (``tini -- hookledger web
--port 8000 ...``) to find the port. A container running ``hookledger worker`` or ``hookledger
sweeper`` has no HTTP server: its health is its process being alive (both wait for Redis and
the database on their own), so the check passes there and a scheduler that acts on health
(Swarm) never restarts a busy worker for want of an endpoint.

Exit status: 0 healthy, 1 unhealthy (Docker's convention). Standard library only.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

DEFAULT_PORT = 8000  # `hookledger web --port`'s default
TIMEOUT_S = 3.0


def web_address(argv: Sequence[str]) -> tuple[str, int] | None:
    """The (host, port) that ``hookledger web`` in ``argv`` serves on; None if it is not web.

    ``argv`` is a whole command line: anything before the ``hookledger`` executable (``tini
    --``, a Python interpreter) is skipped. A wildcard host is reached through loopback.
    """
    for index, arg in enumerate(argv):
        if Path(arg).name == "hookledger":
            rest = list(argv[index + 1 :])
            break
    else:
        return None
    if not rest or rest[0] != "web":
        return None
    options = {"--host": "127.0.0.1", "--port": str(DEFAULT_PORT)}
    for index, arg in enumerate(rest):
        name, _, value = arg.partition("=")
        if name in options:
            options[name] = value if value else (rest[index + 1] if index + 1 < len(rest) else "")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(  # noqa: S104
        options["--host"], options["--host"]
    )
    return host, int(options["--port"])


def check(argv: Sequence[str], *, timeout_s: float = TIMEOUT_S) -> int:
    """0 if ``argv`` is not a web server or its ``/healthz`` answers 200 in time, else 1."""
    try:
        address = web_address(argv)
    except ValueError:  # a --port that is not a number: that server cannot be up
        return 1
    if address is None:
        return 0
    host, port = address
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        with urllib.request.urlopen(f"http://{netloc}/healthz", timeout=timeout_s) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError, ValueError):
        return 1


def main() -> int:
    argv = Path("/proc/1/cmdline").read_bytes().decode(errors="replace").split("\0")
    return check([arg for arg in argv if arg])


if __name__ == "__main__":
    sys.exit(main())
