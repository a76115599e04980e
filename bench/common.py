"""Shared by the benchmarks: services, configs, processes. Everything runs on this machine."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from redis import Redis
from sqlalchemy import create_engine, text

import app.kinds  # noqa: F401 - every source kind's tables, on the metadata
from app.store import schema
from app.store.db import make_engine

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER = os.environ.get("BENCH_PG", "postgresql+psycopg://root@127.0.0.1:5432")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")
SECRET = "bench-secret"

CONFIG = f"""
[processing]
queue = "hl-bench"
stale_after_s = 3600
sweep_interval_s = 3600
batch_size = {{batch_size}}
enqueue_linger_ms = {{linger_ms}}

[sources.htx-bench]
kind = "htx"
account_id = "1001"
auth = "hmac-sha256"
secrets = ["{SECRET}"]

[sources.pp-bench]
kind = "pingpong"
account_id = "2002"
auth = "token"
secrets = ["{SECRET}"]

[sources.trx-bench]
kind = "trx-energy"
account_id = "3003"
auth = "token"
secrets = ["{SECRET}"]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fresh_database(kind: str, workdir: Path) -> str:
    """A new database at the code's schema for one run: ``sqlite`` or ``postgresql``."""
    if kind == "sqlite":
        path = workdir / "bench.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    else:
        admin = create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("DROP DATABASE IF EXISTS hookledger_bench WITH (FORCE)"))
            conn.execute(text("CREATE DATABASE hookledger_bench"))
        admin.dispose()
        url = f"{PG_SERVER}/hookledger_bench"
    engine = make_engine(url)
    schema.upgrade(engine)
    engine.dispose()
    return url


def flush_redis() -> None:
    client = Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()


def environment(
    database_url: str, workdir: Path, *, batch_size: int = 200, linger_ms: float = 100
) -> dict[str, str]:
    config = workdir / "bench.toml"
    config.write_text(
        CONFIG.replace("{batch_size}", str(batch_size)).replace("{linger_ms}", str(linger_ms))
    )
    return {
        **os.environ,
        "HOOKLEDGER_CONFIG": str(config),
        "HOOKLEDGER_DATABASE_URL": database_url,
        "HOOKLEDGER_REDIS_URL": REDIS_URL,
        "HOOKLEDGER_LOG_LEVEL": "WARNING",
        "HOOKLEDGER_LOG_FORMAT": "json",
    }


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def wait_http(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


PYTHON = sys.executable


def machine_jiffies() -> tuple[int, int]:
    """(all, idle + iowait) jiffies of the machine, from ``/proc/stat``."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    return sum(values), values[3] + values[4]


def _processes() -> dict[int, tuple[int, str, int]]:
    """Every process: pid -> (parent pid, command name, user + system jiffies)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(entry.name)] = (int(fields[1]), name, int(fields[11]) + int(fields[12]))
    return found


class CpuMeter:
    """CPU time by process group between ``start()`` and ``stop()``: each named group is the
    given processes and all their descendants; ``postgres`` and ``redis`` are the servers'
    processes by name; ``this process`` is the benchmark itself (its load generator);
    ``other`` is the rest of the machine's busy time. A process that exits in between loses
    its share (the benchmarks' pools keep their connections, so little is lost)."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.seconds: dict[str, float] = {}
        self.busy_s = self.wall_s = 0.0

    def _group_of(self, pid: int, procs: dict[int, tuple[int, str, int]]) -> str | None:
        seen = pid
        while seen > 1 and seen in procs:
            for group, roots in self.groups.items():
                if seen in roots:
                    return group
            seen = procs[seen][0]
        name = procs[pid][1]
        if name.startswith("postgres"):
            return "postgres"
        if name.startswith("redis-server"):
            return "redis"
        if pid == os.getpid():
            return "this process"
        return None

    def _snapshot(self) -> dict[int, tuple[str, int]]:
        procs = _processes()
        return {
            pid: (group, ticks)
            for pid, (_, _, ticks) in procs.items()
            if (group := self._group_of(pid, procs)) is not None
        }

    def start(self) -> None:
        self._before = self._snapshot()
        self._machine = machine_jiffies()
        self._t0 = time.monotonic()

    def stop(self) -> None:
        after = self._snapshot()
        total, idle = machine_jiffies()
        self.wall_s = time.monotonic() - self._t0
        hz = os.sysconf("SC_CLK_TCK")
        seconds: dict[str, float] = {}
        for pid, (group, ticks) in after.items():
            earlier = self._before.get(pid, (group, 0))[1]
            seconds[group] = seconds.get(group, 0.0) + (ticks - earlier) / hz
        # /proc/stat counts every core's jiffies (USER_HZ, like the per-process counters).
        self.busy_s = ((total - self._machine[0]) - (idle - self._machine[1])) / hz
        seconds["other"] = max(0.0, self.busy_s - sum(seconds.values()))
        self.seconds = seconds
