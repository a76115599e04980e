"""A whole hookledger deployment for fault tests: web, workers and sweeper as real processes on
a private Redis and PostgreSQL, real senders that retry, and the exactly-once checks.

Every process logs to a file of its own (a pipe nobody reads would block a busy process);
``Cluster.logs()`` reads them back for a failure message.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
from sqlalchemy import Engine, create_engine, text

from tests.canary import capture_file
from tests.processes import free_port, wait_until
from tests.support import HTX_SECRET, TRX_TOKEN, hookledger, htx_headers, upgrade_schema

FAULT_CONFIG = """
[server]
max_body_bytes = 65536
trusted_proxies = ["127.0.0.1/32"]

[processing]
queue = "hl-faults"
enqueue_linger_ms = 20
retry_delays_s = [1, 2, 4, 8, 16]
stale_after_s = 3
sweep_interval_s = 0.5
job_timeout_s = 30
batch_size = 50

[sources.htx-main]
kind = "htx"
account_id = "1001"
auth = "hmac-sha256"
secrets = ["${TEST_HTX_SECRET}"]

[sources.trx]
kind = "trx-energy"
account_id = "3003"
auth = "token"
secrets = ["${TEST_TRX_TOKEN}"]
"""

# The senders' own request log would print every URL (a token source's URL holds its token).
logging.getLogger("httpx").setLevel(logging.WARNING)

# What one HTX fill and one TRX deposit of the generated events post (exact decimals).
FILL_BTC = Decimal("0.03") - Decimal("0.00006")
FILL_USDT = -Decimal("1260.015")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One callback as a sender would send it, again and again until it is acknowledged."""

    path: str
    body: bytes
    headers: dict[str, str]
    kind: str  # "fill" | "deposit"
    sun: int = 0  # a deposit's amount in sun

    @property
    def sha(self) -> str:
        return hashlib.sha256(self.body).hexdigest()


def make_deliveries(n: int, *, start: int = 0) -> list[Delivery]:
    """``n`` unique events: three HTX fills (one order each) to one TRX deposit."""
    out: list[Delivery] = []
    for i in range(start, start + n):
        if i % 4 == 3:
            sun = 1_000_000 + i * 7
            body = orjson.dumps(
                {
                    "type": "deposit",
                    "id": i,
                    "address": "T9z6yrJXuiJpfWhis3Ae9nHK7k65yM5AHP",
                    "fromAddress": "TE9eC5EiHx9zD5bWfzyPhtQ94s7QMqv2CQ",
                    "amount": sun,
                    "txHash": hashlib.sha256(f"tx-{i}".encode()).hexdigest(),
                    "createdAt": "2025-10-08 16:49:17",
                }
            )
            headers = {"content-type": "application/json"}
            out.append(Delivery(f"/hooks/trx/{TRX_TOKEN}", body, headers, "deposit", sun))
        else:
            body = orjson.dumps(
                {
                    "order-id": 7_000_000_000 + i,
                    "account-id": 1001,
                    "symbol": "btcusdt",
                    "type": "buy-limit",
                    "amount": "0.03",
                    "price": "42000.5",
                    "created-at": 1704440609000,
                    "filled-amount": "0.03",
                    "filled-cash-amount": "1260.015",
                    "filled-fees": "0.00006",
                    "source": "api",
                    "state": "filled",
                }
            )
            out.append(Delivery("/hooks/htx-main", body, htx_headers(body), "fill"))
    return out


@dataclass
class Acks:
    """What the senders were told: every 2xx, by body hash."""

    event_ids: dict[str, str] = field(default_factory=dict)
    answers: Counter[str] = field(default_factory=Counter)  # "accepted", "duplicate", "503", ...
    refused: list[str] = field(default_factory=list)  # 4xx other than the retryable ones

    def __post_init__(self) -> None:
        self._lock = threading.Lock()  # senders may run in several threads

    def count(self, answer: str) -> None:
        with self._lock:
            self.answers[answer] += 1

    def record(self, delivery: Delivery, status: int, body: bytes) -> bool:
        """Note one answer; True when the delivery is done (acknowledged or refused)."""
        with self._lock:
            return self._record(delivery, status, body)

    def _record(self, delivery: Delivery, status: int, body: bytes) -> bool:
        if status == 200:
            answer = orjson.loads(body)
            self.answers[answer["status"]] += 1
            first = self.event_ids.setdefault(delivery.sha, answer["event_id"])
            assert first == answer["event_id"], (
                f"one event, two ids: {first} then {answer['event_id']}"
            )
            return True
        self.answers[str(status)] += 1
        if status in (429, 500, 502, 503, 504):
            return False
        self.refused.append(f"{status} {body[:200]!r}")
        return True


async def _send_all(
    bases: Sequence[str],
    deliveries: Sequence[Delivery],
    acks: Acks,
    *,
    concurrency: int,
    deadline_s: float,
    progress: list[int],
) -> None:
    queue: asyncio.Queue[tuple[int, Delivery]] = asyncio.Queue()
    for item in enumerate(deliveries):
        queue.put_nowait(item)
    deadline = time.monotonic() + deadline_s
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:

        async def sender() -> None:
            while True:
                try:
                    index, delivery = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                attempt = 0
                while True:
                    base = bases[(index + attempt) % len(bases)]  # a load balancer's choice
                    attempt += 1
                    try:
                        response = await client.post(
                            base + delivery.path, content=delivery.body, headers=delivery.headers
                        )
                        if acks.record(delivery, response.status_code, response.content):
                            break
                    except httpx.TransportError as exc:
                        acks.count(type(exc).__name__)
                    if time.monotonic() > deadline:
                        raise AssertionError(f"delivery {index} never acknowledged")
                    await asyncio.sleep(min(0.1 * attempt, 1.0))
                progress[0] += 1

        await asyncio.gather(*(sender() for _ in range(concurrency)))


def send_all(
    bases: Sequence[str],
    deliveries: Sequence[Delivery],
    acks: Acks,
    *,
    concurrency: int = 32,
    deadline_s: float = 240,
    progress: list[int] | None = None,
) -> None:
    """Deliver each event until it is acknowledged, as a retrying sender would."""
    asyncio.run(
        _send_all(
            bases,
            deliveries,
            acks,
            concurrency=concurrency,
            deadline_s=deadline_s,
            progress=progress if progress is not None else [0],
        )
    )


@dataclass
class _Proc:
    args: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    port: int | None = None
    ready: str | None = None  # what its log says once it works
    cwd: Path | None = None  # its "host": a working directory of its own


class Cluster:
    """hookledger processes on one database and one Redis, started and killed for real."""

    def __init__(
        self, workdir: Path, database_url: str, redis_url: str, *, config: str = FAULT_CONFIG
    ) -> None:
        self.workdir = workdir
        self.config_path = workdir / "hookledger.toml"
        self.configure(config)
        self.database_url = upgrade_schema(database_url)
        self.env = {
            **os.environ,
            "HOOKLEDGER_CONFIG": str(self.config_path),
            "HOOKLEDGER_DATABASE_URL": database_url,
            "HOOKLEDGER_REDIS_URL": redis_url,
            "TEST_HTX_SECRET": HTX_SECRET,
            "TEST_TRX_TOKEN": TRX_TOKEN,
            "HOOKLEDGER_LOG_FORMAT": "json",
            "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
        }
        self.procs: dict[str, _Proc] = {}
        self._logs: list[IO[bytes]] = []
        self.engine: Engine = create_engine(database_url)

    def configure(self, config: str) -> None:
        """Write the config processes started from now on read."""
        self.config_path.write_text(textwrap.dedent(config))

    # processes

    def _launch(self, name: str) -> None:
        spec = self.procs[name]
        log = spec.log.open("ab")
        self._logs.append(log)
        start = spec.log.stat().st_size if spec.log.exists() else 0
        spec.proc = subprocess.Popen(
            [sys.executable, *spec.args],
            env=spec.env,
            stdout=log,
            stderr=log,
            cwd=spec.cwd or self.workdir,
        )
        if spec.ready is not None:  # started, not merely forked: a fault may strike next
            marker = spec.ready

            def ready() -> bool:
                if spec.proc is None or spec.proc.poll() is not None:
                    raise AssertionError(f"{name} exited:\n{self.logs(name)}")
                with spec.log.open("rb") as text_log:
                    text_log.seek(start)
                    return marker.encode() in text_log.read()

            wait_until(ready, 30, f"{name} to start")

    def _log_path(self, name: str) -> Path:
        """Where ``name`` logs: the session's canary capture (scanned for leaked secrets at
        the end of the run) when one runs, else the test's directory."""
        return capture_file(f"faults-{name}") or self.workdir / f"{name}.log"

    def _host_env(self, env: dict[str, str], home: Path | None) -> dict[str, str]:
        return env if home is None else {**env, "HOME": str(home), "TMPDIR": str(home)}

    def web(self, name: str, *, home: Path | None = None) -> str:
        """Start ``hookledger web`` (one uvicorn process) on a port of its own; its URL.
        ``home``: the process's own working directory, as on a separate host."""
        port = free_port()
        args = ["-m", "app.cli", "web", "--port", str(port), "--workers", "1"]
        self.procs[name] = _Proc(
            args, self._host_env(self.env, home), self._log_path(name), port=port, cwd=home
        )
        self._launch(name)
        base = f"http://127.0.0.1:{port}"
        self._wait_healthy(name, base)
        return base

    def _wait_healthy(self, name: str, base: str) -> None:
        def up() -> bool:
            proc = self.procs[name].proc
            if proc is None or proc.poll() is not None:
                raise AssertionError(f"{name} exited:\n{self.logs(name)}")
            try:
                return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 30, name)

    def worker(
        self,
        name: str,
        *,
        fork: bool = False,
        failpoint: str | None = None,
        kill: str = "self",
        arm: Path | None = None,
        home: Path | None = None,
    ) -> None:
        """Start an RQ worker (``--fork``: jobs in a work horse), optionally with a fail point."""
        args = ["-m", "app.cli", "worker", *(["--fork"] if fork else [])]
        env = dict(self.env)
        if failpoint is not None:
            assert arm is not None
            arm.touch()
            code = "from tests.faults.failpoint import main; main()"
            args = ["-c", code, "worker", *(["--fork"] if fork else [])]
            env.update(
                HOOKLEDGER_FAILPOINT=failpoint,
                HOOKLEDGER_FAILPOINT_ARM=str(arm),
                HOOKLEDGER_FAILPOINT_KILL=kill,
                PYTHONPATH=str(Path(__file__).parents[2]),
            )
        self.procs[name] = _Proc(
            args,
            self._host_env(env, home),
            self._log_path(name),
            ready="Listening on",
            cwd=home,
        )
        self._launch(name)

    def sweeper(self, name: str = "sweeper") -> None:
        self.procs[name] = _Proc(
            ["-m", "app.cli", "sweeper"],
            self.env,
            self._log_path(name),
            ready="sweep.started",
        )
        self._launch(name)

    def alive(self, name: str) -> bool:
        proc = self.procs[name].proc
        return proc is not None and proc.poll() is None

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name].proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def restart(self, name: str) -> None:
        """SIGKILL ``name`` and start it again with the same command (a web on the same port)."""
        self.kill(name)
        self._launch(name)
        spec = self.procs[name]
        if spec.port is not None:
            self._wait_healthy(name, f"http://127.0.0.1:{spec.port}")

    def logs(self, name: str, tail: int = 4000) -> str:
        return self.procs[name].log.read_text(errors="replace")[-tail:]

    def close(self) -> None:
        for name in self.procs:
            self.kill(name, signal.SIGTERM)
        for log in self._logs:
            log.close()
        self.engine.dispose()

    def redeliver_jobs(self, timeout_s: float = 60) -> None:
        """Queue one more job for every stored event, as a duplicated RQ job would, and wait
        until a worker has run it."""
        from redis import Redis
        from rq.job import JobStatus

        from app.settings import load_settings
        from app.store.queue import EventQueue, batch_job_id

        with self.engine.connect() as conn:
            ids = sorted(conn.execute(text("SELECT id FROM inbound_events")).scalars())
        redis = Redis.from_url(self.env["HOOKLEDGER_REDIS_URL"])
        try:
            events = EventQueue(redis, load_settings(self.env).processing)
            names = []
            for i in range(0, len(ids), 200):
                names.append(batch_job_id(ids[i]) + "-again")
                events.enqueue_batch(ids[i : i + 200], names[-1])

            def ran() -> bool:  # a finished job is deleted at once (result_ttl = 0)
                jobs = [events.fetch_job(name) for name in names]
                return all(j is None or j.get_status() == JobStatus.FINISHED for j in jobs)

            wait_until(ran, timeout_s, "the redelivered jobs")
        finally:
            redis.close()

    # what the database says

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(text(sql), params).scalar_one()

    def wait_settled(self, expected: int, timeout_s: float = 180) -> None:
        """Wait until ``expected`` events are stored and none is still pending."""

        def settled() -> bool:
            stored, final = self.engine_counts()
            return stored >= expected and final == stored

        try:
            wait_until(settled, timeout_s, f"{expected} events to settle")
        except AssertionError as exc:
            stored, final = self.engine_counts()
            raise AssertionError(
                f"{exc}: {stored} stored, {final} final\n"
                + "\n".join(f"--- {n}\n{self.logs(n, 1500)}" for n in self.procs)
            ) from None

    def engine_counts(self) -> tuple[int, int]:
        with self.engine.connect() as conn:
            stored, final = conn.execute(
                text(
                    "SELECT count(*), count(*) FILTER (WHERE status IN "
                    "('processed', 'unhandled', 'dead', 'discarded')) FROM inbound_events"
                )
            ).one()
        return int(stored), int(final)

    def assert_exactly_once(self, deliveries: Sequence[Delivery], acks: Acks) -> None:
        """Every acknowledged event is stored under the id it was acknowledged with; the stored
        set is the sent set; each event is processed and posted exactly one journal entry; the
        balances are exactly what the events add up to; ``hookledger ledger verify`` passes."""
        assert not acks.refused, f"refused deliveries: {acks.refused[:5]}"
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT body_sha256, id, status FROM inbound_events")).all()
            entries = dict(
                conn.execute(
                    text("SELECT event_id, count(*) FROM journal_entries GROUP BY event_id")
                ).all()
            )
            balances = {
                (a, c): Decimal(b)
                for a, c, b in conn.execute(
                    text("SELECT account_id, currency, balance FROM account_balances")
                )
            }
            sums = {
                (a, c): Decimal(s)
                for a, c, s in conn.execute(
                    text(
                        "SELECT account_id, currency, sum(amount) FROM postings "
                        "GROUP BY account_id, currency"
                    )
                )
            }
        stored = {sha: (event_id, status) for sha, event_id, status in rows}
        sent = {d.sha for d in deliveries}
        assert len(rows) == len(stored), "two stored events with one body"
        assert set(stored) == sent, (
            f"{len(sent - set(stored))} sent events not stored, "
            f"{len(set(stored) - sent)} stored events never sent"
        )
        lost = [sha for sha, event_id in acks.event_ids.items() if stored[sha][0] != event_id]
        assert not lost, f"{len(lost)} acknowledged ids not stored, e.g. {lost[:3]}"
        assert set(acks.event_ids) == sent, "some deliveries were never acknowledged"
        statuses = Counter(status for _, status in stored.values())
        assert statuses == {"processed": len(sent)}, statuses
        twice = {e: n for e, n in entries.items() if n != 1}
        assert not twice, f"events with more than one entry: {list(twice.items())[:5]}"
        assert set(entries) == {event_id for event_id, _ in stored.values()}, (
            "an event without its journal entry"
        )
        fills = sum(1 for d in deliveries if d.kind == "fill")
        trx = sum(Decimal(d.sun) for d in deliveries if d.kind == "deposit") / Decimal(1_000_000)
        expected = {
            ("1001", "BTC"): fills * FILL_BTC,
            ("1001", "USDT"): fills * FILL_USDT,
            ("3003", "TRX"): trx,
        }
        for key, amount in expected.items():
            assert balances.get(key) == amount, (key, balances.get(key), amount)
            assert sums.get(key) == amount, (key, sums.get(key), amount)
        verify = hookledger(self.env, "ledger", "verify")
        assert verify.returncode == 0, verify.stdout + verify.stderr
