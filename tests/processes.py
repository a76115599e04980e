"""Real hookledger processes for tests: uvicorn web, RQ workers; started and killed for real."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx

from tests.canary import TeedStream, capture_file


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``hookledger ARGS``. Its stderr (its logs) is teed into the session's canary
    capture as it arrives; ``proc.stderr.read()`` still returns all of it once the process
    has exited."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    capture = capture_file(f"spawn-{'-'.join(args[:1])}-{proc.pid}")
    if capture is not None and proc.stderr is not None:
        proc.stderr = TeedStream(proc.stderr, capture)  # type: ignore[assignment]
    return proc


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stderr:
        proc.stderr.close()


@contextmanager
def web_server(env: dict[str, str], *, workers: int = 2) -> Iterator[str]:
    """Run ``hookledger web`` on a free port; yield its base URL."""
    proc, base = start_web(env, workers=workers)
    try:
        yield base
    finally:
        stop(proc)


def start_web(env: dict[str, str], *, workers: int = 2) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``hookledger web`` on a free port and wait until it answers ``/readyz``; return
    the process and its base URL. The caller stops it."""
    port = free_port()
    proc = spawn(["web", "--port", str(port), "--workers", str(workers)], env)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(f"web server exited with status {proc.returncode}: {err[-2000:]}")
        try:
            return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 30, "the web server")
    except BaseException:
        stop(proc, signal.SIGKILL)
        raise
    return proc, base


def timed_stop(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, *, limit_s: float = 60
) -> tuple[float, int]:
    """Send ``sig`` and wait for the process to exit; return the seconds that took and its exit
    status. A process still running after ``limit_s`` is killed and reported as taking
    ``limit_s`` with status -9."""
    started = time.monotonic()
    proc.send_signal(sig)
    try:
        code = proc.wait(timeout=limit_s)
        took = time.monotonic() - started
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        took, code = limit_s, -signal.SIGKILL
    if proc.stderr:
        proc.stderr.close()
    return took, code
