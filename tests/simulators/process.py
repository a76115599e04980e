"""Start and stop a simulator as a real process, and talk to its control API."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.canary import TeedStream, canary, capture_file
from tests.processes import free_port, stop, wait_until
from tests.support import AUDITOR_SECRET

ROOT = Path(__file__).resolve().parents[2]


class Simulator:
    """A running simulator: ``url`` is its base URL (the query API and ``/control``)."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str) -> None:
        self.proc, self.url = proc, url
        self.http = httpx.Client(base_url=url, timeout=60)

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = self.http.get("/control/status").raise_for_status().json()
        return data

    def truth(self) -> dict[str, Any]:
        data: dict[str, Any] = self.http.get("/control/truth").raise_for_status().json()
        return data

    def plan(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.http.get("/control/plan").raise_for_status().json()
        return data

    def start(self) -> None:
        self.http.post("/control/start").raise_for_status()

    def wait_done(self, timeout_s: float) -> dict[str, Any]:
        """Wait until every planned callback was sent or given up; return the status."""
        wait_until(lambda: self.status()["state"] == "done", timeout_s, "the simulator to send")
        return self.status()

    def late(self, *, count: int | None = None, keys: list[str] | None = None) -> list[Any]:
        """Send dropped callbacks now; what hookledger answered to each."""
        wanted: dict[str, Any] = {} if count is None else {"count": count}
        if keys is not None:
            wanted["keys"] = keys
        data: list[Any] = self.http.post("/control/late", json=wanted).raise_for_status().json()
        return data

    def faults(self, **settings: int) -> dict[str, Any]:
        data: dict[str, Any] = (
            self.http.post("/control/faults", json=settings).raise_for_status().json()
        )
        return data

    def close(self) -> None:
        self.http.close()
        stop(self.proc)


def start_simulator(
    module: str, args: list[str], env: dict[str, str], *, port: int | None = None
) -> Simulator:
    """Start ``python -m tests.simulators.MODULE ARGS`` on ``port`` (default: a free one), its
    stderr teed into the session's canary capture, and wait until its control API answers."""
    port = port or free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", f"tests.simulators.{module}", "--port", str(port), *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    capture = capture_file(f"simulator-{module}-{proc.pid}")
    if capture is not None and proc.stderr is not None:
        proc.stderr = TeedStream(proc.stderr, capture)  # type: ignore[assignment]
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(f"simulator {module} exited ({proc.returncode}): {err[-2000:]}")
        try:
            return httpx.get(f"{url}/control/status", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 30, f"the {module} simulator")
    except BaseException:
        stop(proc, signal.SIGKILL)
        raise
    return Simulator(proc, url)


@contextmanager
def simulator(
    module: str, args: list[str], env: dict[str, str], *, port: int | None = None
) -> Iterator[Simulator]:
    sim = start_simulator(module, args, env, port=port)
    try:
        yield sim
    finally:
        sim.close()


def elapsed(since: float) -> float:
    return round(time.monotonic() - since, 2)


# The simulators' credentials, canaries like every secret of the suite.
HOOK_SECRET = canary("sim-htx-hook")
ACCESS_KEY = canary("sim-htx-access-key")
SECRET_KEY = canary("sim-htx-secret-key")
TOKEN = canary("sim-trx-token")
API_KEY = canary("sim-trx-api-key")
HTX_SOURCE, TRX_SOURCE = "htx-sim", "trx-sim"
HTX_ACCOUNT, TRX_ACCOUNT = "1001", "3003"


def simulator_env() -> dict[str, str]:
    """The environment of a simulator process: its credentials, no hookledger settings."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("HOOKLEDGER_")},
        "SIM_HOOK_SECRET": HOOK_SECRET,
        "SIM_ACCESS_KEY": ACCESS_KEY,
        "SIM_SECRET_KEY": SECRET_KEY,
        "SIM_TOKEN": TOKEN,
        "SIM_API_KEY": API_KEY,
    }


def hookledger_config(
    *,
    htx_pull_url: str | None = None,
    trx_pull_url: str | None = None,
    gap_after_s: int = 3600,
    pull_interval_s: float = 1,
    pull_retry_delays_s: tuple[float, ...] = (1,),
) -> str:
    """A hookledger config with one source per simulator (``htx-sim``, ``trx-sim``), each
    pulling from its simulator when given its URL (asking again about a gap the answer did
    not close after ``pull_retry_delays_s``), and the auditor's key (every account)."""
    delays = ", ".join(f"{d:g}" for d in pull_retry_delays_s)
    htx_pull = (
        f"""
[sources.{HTX_SOURCE}.pull]
base_url = "{htx_pull_url}"
access_key = "{ACCESS_KEY}"
secret_key = "{SECRET_KEY}"
interval_s = {pull_interval_s}
retry_delays_s = [{delays}]
allow_private = true
"""
        if htx_pull_url
        else ""
    )
    trx_pull = (
        f"""
[sources.{TRX_SOURCE}.pull]
base_url = "{trx_pull_url}"
api_key = "{API_KEY}"
interval_s = {pull_interval_s}
retry_delays_s = [{delays}]
allow_private = true
"""
        if trx_pull_url
        else ""
    )
    return f"""
[server]
max_body_bytes = 65536
trusted_proxies = ["127.0.0.1/32"]

[processing]
queue = "hl-test"
retry_delays_s = [0, 0]
stale_after_s = 2
sweep_interval_s = 0.2
job_timeout_s = 60

[sources.{HTX_SOURCE}]
kind = "htx"
account_id = "{HTX_ACCOUNT}"
auth = "hmac-sha256"
secrets = ["{HOOK_SECRET}"]
gap_after_s = {gap_after_s}
{htx_pull}
[sources.{TRX_SOURCE}]
kind = "trx-energy"
account_id = "{TRX_ACCOUNT}"
auth = "token"
secrets = ["{TOKEN}"]
gap_after_s = {gap_after_s}
{trx_pull}
[api_keys.auditor]
key = "ak_auditor"
secret = "{AUDITOR_SECRET}"
accounts = ["*"]
"""
