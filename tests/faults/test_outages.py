"""Redis restarted, Redis flushed, PostgreSQL down for 30 s, each in the middle of a burst of
real deliveries: every acknowledged event is stored and processed exactly once."""

from __future__ import annotations

import threading
import time

import pytest

from tests.faults.cluster import FAULT_CONFIG, Acks, Cluster, make_deliveries, send_all
from tests.faults.servers import PrivatePostgres, PrivateRedis
from tests.processes import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.slow]

BURST = 2_000


class Burst:
    """Deliveries sent from a thread, so the test can strike while they flow."""

    def __init__(self, bases: list[str], n: int, *, concurrency: int = 32) -> None:
        self.deliveries = make_deliveries(n)
        self.acks = Acks()
        self.progress = [0]
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(bases, concurrency))
        self._thread.start()

    def _run(self, bases: list[str], concurrency: int) -> None:
        try:
            send_all(
                bases,
                self.deliveries,
                self.acks,
                concurrency=concurrency,
                progress=self.progress,
            )
        except BaseException as exc:  # noqa: BLE001 - reported by join()
            self.error = exc

    def wait_for(self, acknowledged: int) -> None:
        wait_until(
            lambda: self.progress[0] >= acknowledged or not self._thread.is_alive(),
            120,
            f"{acknowledged} acknowledgements",
        )
        assert self.progress[0] < len(self.deliveries), "the burst ended before the fault"

    def join(self) -> None:
        self._thread.join(timeout=300)
        assert not self._thread.is_alive(), "the senders never finished"
        if self.error is not None:
            raise self.error


def _start(cluster: Cluster, workers: int = 2) -> str:
    base = cluster.web("web")
    for n in range(workers):
        cluster.worker(f"worker-{n}")
    cluster.sweeper()
    return base


@pytest.mark.timeout(300)
def test_redis_restarted_empty_during_a_burst(
    cluster: Cluster, private_redis: PrivateRedis
) -> None:
    base = _start(cluster)
    burst = Burst([base], BURST)
    burst.wait_for(BURST // 3)
    private_redis.restart()  # SIGKILL; no persistence: queues and dedupe keys are gone
    burst.join()
    cluster.wait_settled(BURST)
    cluster.assert_exactly_once(burst.deliveries, burst.acks)
    for name in cluster.procs:  # nothing needed a restart by hand
        assert cluster.alive(name), f"{name} died:\n{cluster.logs(name)}"
    _redeliveries_are_duplicates(cluster, base, burst)


@pytest.mark.timeout(300)
def test_redis_flushed_twice_during_a_burst(cluster: Cluster, private_redis: PrivateRedis) -> None:
    base = _start(cluster)
    burst = Burst([base], BURST)
    burst.wait_for(BURST // 3)
    private_redis.flush()
    burst.wait_for(2 * BURST // 3)
    private_redis.flush()
    burst.join()
    cluster.wait_settled(BURST)
    cluster.assert_exactly_once(burst.deliveries, burst.acks)
    _redeliveries_are_duplicates(cluster, base, burst)


def _redeliveries_are_duplicates(cluster: Cluster, base: str, burst: Burst) -> None:
    """Redis forgot what it saw; SQL did not: a redelivery is a duplicate with the first id."""
    again = burst.deliveries[::10]
    before = burst.acks.answers["duplicate"]
    send_all([base], again, burst.acks, concurrency=8)  # Acks checks the ids are the first ones
    assert burst.acks.answers["duplicate"] - before == len(again)
    cluster.assert_exactly_once(burst.deliveries, burst.acks)


OUTAGE_S = 30
# Job retries must outlast the outage (5 s, 30 s, ... in production): here 62 s in all.
OUTAGE_CONFIG = FAULT_CONFIG.replace(
    "retry_delays_s = [1, 2, 4, 8, 16]", "retry_delays_s = [2, 4, 8, 16, 32]"
)


@pytest.mark.timeout(400)
def test_postgresql_down_for_30_s_loses_and_repeats_nothing(
    cluster: Cluster, private_pg: PrivatePostgres
) -> None:
    cluster.configure(OUTAGE_CONFIG)
    base = _start(cluster)
    n = 1_200
    burst = Burst([base], n, concurrency=8)
    burst.wait_for(300)
    private_pg.stop("immediate")  # a crash: connections cut, nothing flushed politely
    down_since = time.monotonic()
    try:
        time.sleep(OUTAGE_S / 2)
        during = dict(burst.acks.answers)
        stored_during = len(burst.acks.event_ids)
        time.sleep(OUTAGE_S / 2)
    finally:
        private_pg.start()
    assert time.monotonic() - down_since >= OUTAGE_S
    burst.join()
    cluster.wait_settled(n)
    # Senders were told to come back (503) while nothing could be stored...
    assert during.get("503", 0) > 0, during
    # ... and every 200 they got was for an event that is durably stored.
    assert stored_during < n
    cluster.assert_exactly_once(burst.deliveries, burst.acks)
    # Jobs that met the outage failed and were retried (RQ Retry, then the sweep)...
    worker_logs = "".join(cluster.logs(f"worker-{n}", tail=10**8) for n in range(2))
    assert '"event": "batch.failed"' in worker_logs
    # ... and no process needed a restart by hand.
    for name in cluster.procs:
        assert cluster.alive(name), f"{name} died:\n{cluster.logs(name)}"
