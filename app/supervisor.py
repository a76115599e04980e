"""``hookledger up``: start web, workers and the sweeper, and keep them running.

What it promises, as honcho or overmind users expect:

- before anything starts, every cause that would stop a child at once is checked and named
  with a non-zero exit: the port is taken, Redis does not answer, the database cannot be
  reached or its tables made (the configuration was checked before this module runs);
- ``up`` is "up" only once its own web process answers: ``/healthz`` must carry the random
  ``HOOKLEDGER_INSTANCE_ID`` handed to that process, so another server on the port never
  passes for it;
- a child that dies while starting stops ``up`` with its name, exit status and last output;
- a child that dies later is named on stderr and restarted after a backoff (1 s, doubling to
  30 s; back to 1 s after it ran a minute), except one that exits 2 (it refuses its
  configuration: restarting cannot help), which stops ``up``;
- Ctrl-C or SIGTERM stops every child with SIGTERM (each finishes what it holds), waits up to
  ``STOP_GRACE_S`` and kills what is left. Children run in their own process groups, so a
  terminal's Ctrl-C reaches ``up`` alone and each child gets exactly one signal.

Every line a child writes is passed on, prefixed with the child's name.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, NoReturn

import httpx

from app.errors import HookledgerError

STOP_GRACE_S = 25.0  # under Kubernetes' and systemd's usual 30 s
READY_TIMEOUT_S = 60.0
SETTLE_S = 3.0  # a child alive this long after the web answered has started
BACKOFF_MAX_S = 30.0
HEALTHY_RUN_S = 60.0  # a child that ran this long restarts after the shortest backoff
EXIT_REFUSED = 2  # the exit status of a hookledger process that refuses its configuration


class StartFailed(HookledgerError):
    """A child could not start; the message names it and the cause."""


def fail(message: str) -> NoReturn:
    raise StartFailed(message)


@dataclass(slots=True)
class Child:
    """One supervised process: its name, its command and its current incarnation."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff_s: float = 1.0
    restart_at: float | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=20))

    def last_words(self) -> str:
        """The child's last output lines, for a message about its death."""
        lines = [line for line in self.tail if line.strip()]
        return "\n".join(f"    {line}" for line in lines[-8:]) or "    (no output)"


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def why_port_is_taken(host: str, port: int) -> str | None:
    """None when ``host:port`` can be listened on, else why not (as uvicorn would bind it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


class Supervisor:
    """Starts, watches and restarts ``children``; all output goes to ``out``."""

    def __init__(self, children: list[Child], env: dict[str, str], out: IO[str]) -> None:
        self.children = children
        self.env = env
        self.out = out
        self._lock = threading.Lock()

    def say(self, text: str) -> None:
        with self._lock:
            self.out.write(f"hookledger up: {text}\n")
            self.out.flush()

    def start(self, child: Child) -> None:
        child.proc = subprocess.Popen(
            child.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # signals come from up alone, once
        )
        child.started = time.monotonic()
        child.restart_at = None
        child.tail.clear()
        threading.Thread(target=self._relay, args=(child, child.proc), daemon=True).start()

    def _relay(self, child: Child, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        width = max(len(c.name) for c in self.children)
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            child.tail.append(line)
            with self._lock:
                self.out.write(f"{child.name:<{width}} | {line}\n")
                self.out.flush()
        proc.stdout.close()

    def dead(self) -> list[tuple[Child, int]]:
        """Children whose process has exited since they were started, with the status."""
        found = []
        for child in self.children:
            if child.proc is not None and child.restart_at is None:
                code = child.proc.poll()
                if code is not None:
                    child.proc.wait()
                    found.append((child, code))
        return found

    def stop_all(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM every running child, wait up to ``grace_s`` for all, SIGKILL the rest."""
        running = [
            (c, c.proc) for c in self.children if c.proc is not None and c.proc.poll() is None
        ]
        for _child, proc in running:
            proc.terminate()
        deadline = time.monotonic() + grace_s
        for child, proc in running:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{child.name} (pid {proc.pid}) did not stop in {grace_s:g} s; killed")
                proc.kill()
                proc.wait()


def own_web_answers(base_url: str, instance: str) -> bool:
    """True when the web process answering at ``base_url`` is the one given ``instance`` and
    its database and Redis answer."""
    try:
        health = httpx.get(f"{base_url}/healthz", timeout=2)
        if health.status_code != 200 or health.json().get("instance") != instance:
            return False
        return httpx.get(f"{base_url}/readyz", timeout=5).status_code == 200
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


def wait_until_started(
    supervisor: Supervisor, ready: Callable[[], bool], timeout_s: float = READY_TIMEOUT_S
) -> None:
    """Return once ``ready()`` and every child has lived ``SETTLE_S``; raise ``StartFailed``
    naming the first child that died, or the web's silence past ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    ready_at: float | None = None
    while True:
        for child, code in supervisor.dead():
            raise StartFailed(
                f"{child.name} could not start: it {describe_exit(code)}\n{child.last_words()}"
            )
        now = time.monotonic()
        if ready_at is None and ready():
            ready_at = now
        if ready_at is not None and now - ready_at >= SETTLE_S:
            return
        if ready_at is None and now > deadline:
            raise StartFailed(f"the web process did not answer within {timeout_s:g} s")
        time.sleep(0.2)


def supervise(supervisor: Supervisor, stopping: Callable[[], bool]) -> int:
    """Restart children as they die until ``stopping()``; 0, or 1 when a child refuses to run."""
    while not stopping():
        now = time.monotonic()
        for child, code in supervisor.dead():
            assert child.proc is not None
            pid = child.proc.pid
            if code == EXIT_REFUSED:
                supervisor.say(
                    f"{child.name} (pid {pid}) {describe_exit(code)}: it refuses to run, "
                    f"so up stops\n{child.last_words()}"
                )
                return 1
            if now - child.started >= HEALTHY_RUN_S:
                child.backoff_s = 1.0
            supervisor.say(
                f"{child.name} (pid {pid}) {describe_exit(code)}; "
                f"restarting it in {child.backoff_s:g} s"
            )
            child.restart_at = now + child.backoff_s
            child.backoff_s = min(child.backoff_s * 2, BACKOFF_MAX_S)
        for child in supervisor.children:
            if child.restart_at is not None and now >= child.restart_at:
                supervisor.start(child)
                assert child.proc is not None
                supervisor.say(f"{child.name} restarted (pid {child.proc.pid})")
        time.sleep(0.2)
    return 0


def new_instance_id() -> str:
    return secrets.token_hex(8)


def install_stop_handlers() -> Callable[[], bool]:
    """Make SIGINT and SIGTERM ask for a stop; return the question "was a stop asked for?"."""
    asked = threading.Event()

    def _stop(_sig: int, _frame: object) -> None:
        asked.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    return asked.is_set


def hookledger_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "app.cli", *args]


def run_db_upgrade(env: dict[str, str]) -> None:
    """Bring the database to the code's schema (``hookledger db upgrade``) in a child process;
    raise ``StartFailed`` with its words if it fails."""
    result = subprocess.run(
        hookledger_argv("db", "upgrade"), env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        words = (result.stderr or result.stdout).strip().splitlines()[-8:]
        detail = "\n".join(f"    {line}" for line in words)
        raise StartFailed(
            f"the database is not usable ({describe_exit(result.returncode)})\n{detail}"
        )


def default_env(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, **extra}
