"""Redis behind Sentinel: web and workers find the master through ``redis+sentinel://`` and
follow it through a failover in the middle of a burst, still applying each event once."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import RedisError

from app.store.redis_conn import redis_client
from tests.faults.cluster import Acks, Cluster, make_deliveries, send_all
from tests.faults.servers import PrivatePostgres, PrivateRedis, redis_binary
from tests.processes import free_port, wait_until

pytestmark = [pytest.mark.faults, pytest.mark.slow]

SERVICE = "hl-master"


class SentinelSet:
    """A master (the test's private Redis), one replica and one sentinel watching them."""

    def __init__(self, master: PrivateRedis) -> None:
        self.master_port = master.port
        self.replica = PrivateRedis(replica_of=master.port)
        self.replica.start()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="hookledger-sentinel-"))
        conf = self.dir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {master.port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
        )
        self.proc = subprocess.Popen(
            [redis_binary(), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.client = Redis(port=self.port, socket_timeout=5, decode_responses=True)
        wait_until(self._sees_replica, 30, "the sentinel to find the replica")

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/{SERVICE}/0"

    def _sees_replica(self) -> bool:
        try:
            replicas = self.client.execute_command("SENTINEL", "REPLICAS", SERVICE)
        except (RedisError, OSError):
            return False
        return any(
            r.get("port") == str(self.replica.port) and r.get("master-link-status") == "ok"
            for r in replicas
        )

    def master(self) -> int:
        _, port = self.client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return int(port)

    def failover(self) -> None:
        self.client.execute_command("SENTINEL", "FAILOVER", SERVICE)
        wait_until(lambda: self.master() == self.replica.port, 30, "the failover")

    def destroy(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.client.close()
        self.replica.destroy()


@pytest.fixture
def sentinel(private_redis: PrivateRedis) -> Iterator[SentinelSet]:
    watched = SentinelSet(private_redis)
    yield watched
    watched.destroy()


def test_the_client_reaches_the_master_named_by_the_sentinel(sentinel: SentinelSet) -> None:
    client = redis_client(sentinel.url, socket_timeout=5)
    client.set("hl:probe", "1")
    assert client.info("server")["tcp_port"] == sentinel.master_port
    client.close()


@pytest.mark.timeout(240)
def test_a_failover_mid_burst_loses_and_repeats_nothing(
    tmp_path: Path, private_pg: PrivatePostgres, sentinel: SentinelSet
) -> None:
    private_pg.start_if_stopped()
    cluster = Cluster(tmp_path, private_pg.create_database("f_sentinel"), sentinel.url)
    try:
        base = cluster.web("web")
        cluster.worker("worker-a")
        cluster.worker("worker-b")
        cluster.sweeper()
        deliveries = make_deliveries(600)
        acks = Acks()
        send_all([base], deliveries[:300], acks)
        sentinel.failover()  # the replica is master now; the old master its replica
        send_all([base], deliveries[300:], acks)
        cluster.wait_settled(len(deliveries))
        cluster.assert_exactly_once(deliveries, acks)
        for name in cluster.procs:
            assert cluster.alive(name), f"{name} died:\n{cluster.logs(name)}"
        # The jobs after the failover went through the new master.
        with redis_client(sentinel.url, socket_timeout=5) as client:
            assert client.info("server")["tcp_port"] == sentinel.replica.port
    finally:
        cluster.close()
