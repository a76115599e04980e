"""``hookledger up`` from a fresh directory, as a newcomer runs it: real processes, real ports.

It makes the admin token and an accountants' key on first start (kept in ``./var``, mode
0600, the same on the next start), prints commands that work for an integrator, an ops person
and an accountant, restarts a child killed with SIGKILL (and says so), refuses to start on a
taken port, a bad config or an unreachable database with a message and a non-zero exit, and
stops every child on SIGTERM.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from app import supervisor
from tests.canary import record_output
from tests.processes import free_port, wait_until

pytestmark = pytest.mark.slow


class Up:
    """A running ``hookledger up``: its process and everything it wrote so far."""

    def __init__(self, cwd: Path, env: dict[str, str], *args: str) -> None:
        self.out: list[str] = []
        self.err: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "up", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.readers = [
            threading.Thread(target=self._read, args=(stream, lines), daemon=True)
            for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, lines: list[str]) -> None:
        with stream:
            for line in stream:
                lines.append(line.rstrip("\n"))

    def stdout(self) -> str:
        return "\n".join(self.out)

    def stderr(self) -> str:
        return "\n".join(self.err)

    def wait_for_welcome(self) -> str:
        def printed() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"up exited {self.proc.returncode}: {self.stderr()[-3000:]}")
            return any(line.startswith("  ts=$(date") for line in self.out)

        wait_until(printed, 90, "up's welcome")
        return self.stdout()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        for reader in self.readers:
            reader.join(timeout=30)
        record_output("up", self.stderr(), None)  # stdout holds the printed credentials
        return code


@pytest.fixture
def fresh(tmp_path: Path, redis_url: str) -> tuple[Path, dict[str, str]]:
    """A fresh directory and the environment of a newcomer: no config, no token, no key."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HOOKLEDGER_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env["HOOKLEDGER_REDIS_URL"] = redis_url
    return tmp_path, env


def _replay_curl(command: str) -> httpx.Response:
    """Send what a printed ``curl`` command sends (method, URL, headers, body)."""
    words = shlex.split(command)
    assert words[0] == "curl"
    url = next(w for w in words if w.startswith("http"))
    headers = dict(words[i + 1].split(": ", 1) for i, w in enumerate(words) if w == "-H")
    body = words[words.index("--data-raw") + 1].encode() if "--data-raw" in words else None
    method = words[words.index("-X") + 1] if "-X" in words else "GET"
    return httpx.request(method, url, headers=headers, content=body, timeout=10)


def _printed_curls(text: str) -> dict[str, str]:
    curls: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        if line.startswith("# "):
            name = line[2:].split(" ", 1)[0]
        elif line.startswith("curl ") and name:
            curls[name] = line
            name = None
    return curls


def test_first_run_serves_integrators_ops_and_accountants(fresh):
    cwd, env = fresh
    port = free_port()
    up = Up(cwd, env, "--port", str(port), "--workers", "1")
    try:
        text = up.wait_for_welcome()
        base = f"http://127.0.0.1:{port}"
        assert f"hookledger is up: {base}" in text

        # Integrators: one working sample per configured source of the demo config.
        curls = _printed_curls(text)
        assert set(curls) == {"htx-demo", "local-open", "pingpong-demo", "trx-demo"}
        for name, command in curls.items():
            first = _replay_curl(command)
            assert first.status_code == 200, (name, first.text)
            again = _replay_curl(command)
            assert again.json()["status"] == "duplicate"

        # Ops: the printed admin curl works, and the console takes the printed token.
        credentials = cwd / "var" / "credentials.json"
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        kept = json.loads(credentials.read_text())
        admin_line = next(line for line in up.out if "Authorization: Bearer" in line)
        assert kept["admin_token"] in admin_line
        events = _replay_curl(admin_line.strip())
        assert events.status_code == 200
        assert len(events.json()["events"]) >= 4

        # Accountants: the printed command (openssl signs it at run time) reads the ledger.
        accountant = next(line for line in up.out if line.startswith("  ts=$(date")).strip()
        assert kept["api_key"] in accountant

        def posted() -> bool:
            result = subprocess.run(
                ["bash", "-c", accountant], capture_output=True, text=True, check=True
            )
            body = json.loads(result.stdout)
            assert body["code"] == 0, body
            return body["data"]["total_records"] >= 2

        wait_until(posted, 60, "the samples' postings in the accountants' API")
    finally:
        assert up.stop() == 0

    # The next start keeps the same credentials and says where they are.
    again = Up(cwd, env, "--port", str(port), "--workers", "1")
    try:
        assert kept["admin_token"] in again.wait_for_welcome()
        assert kept["api_secret"] in again.stdout()
    finally:
        assert again.stop() == 0


def test_a_killed_worker_is_named_and_restarted_and_sigterm_stops_everything(fresh):
    cwd, env = fresh
    port = free_port()
    up = Up(cwd, env, "--port", str(port), "--workers", "1")
    try:
        up.wait_for_welcome()
        worker = _child_pid(up.proc.pid, "worker")
        os.kill(worker, signal.SIGKILL)
        wait_until(
            lambda: f"worker-1 (pid {worker}) was killed by SIGKILL; restarting" in up.stderr(),
            30,
            "up to name the killed worker",
        )
        wait_until(lambda: "worker-1 restarted (pid" in up.stderr(), 30, "the restart")
        assert up.proc.poll() is None
        children = _children(up.proc.pid)
        assert len(children) == 3 and worker not in children
    finally:
        started = time.monotonic()
        assert up.stop() == 0
        assert time.monotonic() - started < supervisor.STOP_GRACE_S + 5
    for pid in children:
        assert not _alive(pid), f"child {pid} outlived up"


def test_a_taken_port_stops_up_with_the_cause(fresh):
    cwd, env = fresh
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = Up(cwd, env, "--port", str(port))
        assert up.proc.wait(timeout=60) == 1
        up.stop()
    assert f"cannot listen on 127.0.0.1:{port}" in up.stderr()
    assert "hookledger is up" not in up.stdout()


def test_an_unreachable_database_stops_up_with_the_cause(fresh):
    cwd, env = fresh
    env = {**env, "HOOKLEDGER_DATABASE_URL": f"postgresql+psycopg://root@127.0.0.1:{free_port()}/x"}
    up = Up(cwd, env, "--port", str(free_port()))
    assert up.proc.wait(timeout=90) == 1
    up.stop()
    assert "the database is not usable" in up.stderr()
    assert "unreachable" in up.stderr()
    assert "hookledger is up" not in up.stdout()


def test_a_bad_config_stops_up_naming_the_key(fresh):
    cwd, env = fresh
    (cwd / "hookledger.toml").write_text("[server]\nmax_body_bytes = -1\n")
    up = Up(cwd, env, "--port", str(free_port()))
    assert up.proc.wait(timeout=60) == 2
    up.stop()
    assert "server.max_body_bytes" in up.stderr()


def test_readiness_is_judged_on_up_s_own_web_process():
    """Another server answering ``/healthz`` on the port never passes for up's web."""
    import http.server

    class Other(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"status": "ok"}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Other)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert not supervisor.own_web_answers(base, supervisor.new_instance_id())
        assert supervisor.why_port_is_taken("127.0.0.1", server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _child_pid(pid: int, verb: str) -> int:
    for child in _children(pid):
        try:
            argv = (Path("/proc") / str(child) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if verb.encode() in argv:
            return child
    raise AssertionError(f"no {verb} child of {pid}")


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
