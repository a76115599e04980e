"""Body bombs against a real uvicorn process: oversized bodies (declared and chunked), 100,000-deep
nesting and 10,000-digit numbers, 50 of each, half of them concurrently.

Each must get its documented 4xx with a JSON error (never a 5xx, never a dropped connection),
the web processes' resident memory must not keep growing from round to round (within
``RSS_GROWTH_LIMIT_KIB``), and the server must still answer ``/healthz`` and take a valid event
afterwards.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.canary import capture_file
from tests.processes import free_port, stop, wait_until
from tests.support import TEST_CONFIG, body_of, htx_headers, htx_update

pytestmark = pytest.mark.slow

MAX_BODY = 1_048_576  # big enough that the nesting and number bombs reach the JSON parser
RSS_GROWTH_LIMIT_KIB = 20 * 1024
EACH = 50
ROUNDS = 8  # measured rounds after the warm-up: the first half finds the plateau
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Bomb:
    name: str
    source: str
    body: bytes
    chunked: bool
    status: int
    needle: str


BOMBS = [
    Bomb("twice-the-limit", "htx-main", b"x" * (2 * MAX_BODY), False, 413, "over the"),
    Bomb("twice-the-limit-chunked", "htx-main", b"x" * (2 * MAX_BODY), True, 413, "over the"),
    Bomb("deep-arrays", "open", b"[" * 100_000 + b"]" * 100_000, False, 400, "nested deeper"),
    Bomb("deep-objects", "open", b'{"a":' * 100_000, False, 400, "nested deeper"),
    Bomb("10k-digits", "open", b'{"order-id": ' + b"9" * 10_000 + b"}", False, 400, "longer than"),
]


@dataclass
class Server:
    base: str
    pid: int
    log: Path


@pytest.fixture
def server(env: dict[str, str], tmp_path: Path) -> Iterator[Server]:
    """``hookledger web`` with two workers and a 1 MiB body limit. Its log goes to a file: a
    pipe nobody reads would fill up and block the server once ~64 KiB of log lines are out."""
    config = tmp_path / "bombs.toml"
    config.write_text(
        textwrap.dedent(TEST_CONFIG).replace(
            "max_body_bytes = 65536", f"max_body_bytes = {MAX_BODY}"
        )
    )
    port, log = free_port(), capture_file("bombs-web") or tmp_path / "web.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "web", "--port", str(port), "--workers", "2"],
            env={**env, "HOOKLEDGER_CONFIG": str(config)},
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        """Both uvicorn processes up: /readyz answers from the first one that is, and the
        warm-up must reach both, or the late one warms up during the measured rounds."""
        assert proc.poll() is None, f"web server exited: {log.read_text()[-2000:]}"
        if log.read_text().count("Application startup complete.") < 2:
            return False
        try:
            return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, 30, "the web server")
        yield Server(base, proc.pid, log)
    finally:
        stop(proc)


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (the uvicorn supervisor and its workers)."""
    found = [pid]
    for task in os.listdir(f"/proc/{pid}/task"):
        children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        for child in children:
            found += _tree(int(child))
    return found


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


def _rss_kib(root: int) -> dict[int, int]:
    return {pid: _status_kib(pid, "VmRSS") for pid in _tree(root)}


async def _send(client: httpx.AsyncClient, bomb: Bomb) -> httpx.Response:
    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(bomb.body), CHUNK):
            yield bomb.body[start : start + CHUNK]

    return await client.post(
        f"/hooks/{bomb.source}",
        content=chunks() if bomb.chunked else bomb.body,
        headers={"content-type": "application/json"},
    )


async def _round(base: str, bombs: list[Bomb], *, concurrently: bool) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bombs) if concurrently else 1)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        if concurrently:
            return list(await asyncio.gather(*(_send(client, b) for b in bombs)))
        return [await _send(client, b) for b in bombs]


def _check(bombs: list[Bomb], responses: list[httpx.Response]) -> None:
    for bomb, response in zip(bombs, responses, strict=True):
        assert response.status_code == bomb.status, (bomb.name, response.text[:200])
        assert response.headers["content-type"] == "application/json"
        assert bomb.needle in response.json()["message"], (bomb.name, response.text[:200])


@pytest.mark.timeout(240)  # setup waits up to 30 s; nine rounds on a loaded machine
def test_body_bombs_get_4xx_json_with_bounded_memory(server: Server) -> None:
    # Warm-up, as concurrent as the measured rounds: a worker's first bombs take its allocator
    # towards a plateau. Where a process's resident size settles inside the plateau depends on
    # which bombs it happened to get (after one round: -9 to +18 MiB between runs; over eight
    # more rounds it wandered inside 89-116 MiB per process with no trend). So the first
    # measured rounds find the plateau and the later ones must average no higher: a leak keeps
    # adding round after round (a leak of 40 KB per request, planted to check this test,
    # showed as +38 MiB), freed buffers the allocator keeps do not (0 to +7 MiB in six runs).
    warm_up = [b for _ in range(EACH // 2) for b in BOMBS]
    _check(warm_up, asyncio.run(_round(server.base, warm_up, concurrently=True)))
    before = _rss_kib(server.pid)

    half = EACH // 2
    one_by_one = [b for b in BOMBS for _ in range(half)]
    all_at_once = [b for _ in range(EACH - half) for b in BOMBS]  # interleaved kinds
    totals = []  # resident KiB of the server's processes together, after each round
    for _ in range(ROUNDS):
        _check(one_by_one, asyncio.run(_round(server.base, one_by_one, concurrently=False)))
        _check(all_at_once, asyncio.run(_round(server.base, all_at_once, concurrently=True)))
        totals.append(sum(_rss_kib(server.pid).values()))
    after = _rss_kib(server.pid)

    assert set(after) == set(before), "a web process died or was replaced during the bombs"
    half_way = ROUNDS // 2
    growth = sum(totals[half_way:]) // (ROUNDS - half_way) - sum(totals[:half_way]) // half_way
    print(
        f"\nRSS KiB after warm-up {before}, at the end {after}; all processes after each "
        f"round {totals}; later rounds' average past the earlier ones': {growth} KiB; "
        f"{ROUNDS * (len(one_by_one) + len(all_at_once))} bombs"
    )
    assert growth < RSS_GROWTH_LIMIT_KIB, f"RSS grew {growth} KiB from round to round"

    # Still serving: health and a valid, signed event.
    assert httpx.get(f"{server.base}/healthz", timeout=5).json() == {"status": "ok"}
    body = body_of(htx_update(9090, "filled", "1", "100", "0.1"))
    response = httpx.post(
        f"{server.base}/hooks/htx-main", content=body, headers=htx_headers(body), timeout=10
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"

    log = server.log.read_text()
    assert "web.unhandled_error" not in log
    assert "Traceback" not in log
    rejected = sum('"hook.rejected"' in line for line in log.splitlines())
    assert rejected >= len(warm_up) + ROUNDS * (len(one_by_one) + len(all_at_once))
