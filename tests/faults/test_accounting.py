"""End-to-end accounting under chaos, and scale-out.

5,000 unique events go through two web processes while web processes, workers and Redis are
SIGKILLed and restarted at random moments; afterwards the set of processed events is exactly
the set sent, no event has two journal entries, the balances are exactly the sum of the
events, and ``hookledger ledger verify`` passes.

Scale-out: two web processes and three workers, each started as if on a host of its own (its
own working directory and nothing shared but the network addresses of Redis and PostgreSQL),
under load with the same callbacks delivered to both web processes at once.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from tests.faults.cluster import Acks, Cluster, make_deliveries, send_all
from tests.faults.servers import PrivateRedis

pytestmark = [pytest.mark.faults, pytest.mark.slow]


@pytest.mark.timeout(420)
def test_5000_events_through_random_restarts_are_each_applied_once(
    cluster: Cluster, private_redis: PrivateRedis
) -> None:
    bases = [cluster.web("web-a"), cluster.web("web-b")]
    for name in ("worker-a", "worker-b"):
        cluster.worker(name)
    cluster.sweeper()
    deliveries = make_deliveries(5_000)
    acks = Acks()
    done = threading.Event()
    struck: list[str] = []
    chaos_error: list[BaseException] = []

    def chaos() -> None:
        rng = random.Random(20261121)  # the same faults in the same order on every run
        victims: list[str] = []
        try:
            while not done.wait(rng.uniform(0.5, 1.5)):
                if not victims:  # each round strikes every process once, in random order
                    victims = ["web-a", "web-b", "worker-a", "worker-b", "redis"]
                    rng.shuffle(victims)
                victim = victims.pop()
                if victim == "redis":
                    private_redis.restart()
                else:
                    cluster.restart(victim)  # SIGKILL, then the same command again
                struck.append(victim)
        except BaseException as exc:  # noqa: BLE001 - reported below
            chaos_error.append(exc)

    monkey = threading.Thread(target=chaos)
    monkey.start()
    try:
        send_all(bases, deliveries, acks, concurrency=32, deadline_s=300)
    finally:
        done.set()
        monkey.join()
    assert not chaos_error, chaos_error
    # Every process was hit at least once while the events flowed.
    assert set(struck) == {"web-a", "web-b", "worker-a", "worker-b", "redis"}, struck
    cluster.wait_settled(len(deliveries), timeout_s=240)
    cluster.assert_exactly_once(deliveries, acks)
    print(f"chaos: {len(struck)} SIGKILL+restarts ({', '.join(struck)}); answers {acks.answers}")


@pytest.mark.timeout(300)
def test_two_web_and_three_workers_as_separate_hosts_apply_each_event_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    hosts = {name: tmp_path / name for name in ("web-1", "web-2", "wk-1", "wk-2", "wk-3")}
    for home in hosts.values():
        home.mkdir()
    bases = [cluster.web("web-1", home=hosts["web-1"]), cluster.web("web-2", home=hosts["web-2"])]
    for name in ("wk-1", "wk-2", "wk-3"):
        cluster.worker(name, home=hosts[name])
    cluster.sweeper()
    deliveries = make_deliveries(2_000)
    acks = Acks()
    # Every callback goes to both web hosts at once (a sender's retry racing its first try
    # through a load balancer): each pair must give one event and one effect.
    senders = [
        threading.Thread(target=send_all, args=([bases[0]], deliveries, acks)),
        threading.Thread(target=send_all, args=([bases[1]], deliveries[::-1], acks)),
    ]
    started = time.monotonic()
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    elapsed = time.monotonic() - started
    assert acks.answers["accepted"] == len(deliveries), acks.answers
    assert acks.answers["duplicate"] == len(deliveries), acks.answers
    cluster.wait_settled(len(deliveries))
    cluster.assert_exactly_once(deliveries, acks)
    # The work was shared: every worker host applied some of it.
    for name in ("wk-1", "wk-2", "wk-3"):
        assert '"event": "event.processed"' in cluster.logs(name, tail=10**8), name
    print(f"scale-out: {2 * len(deliveries)} deliveries in {elapsed:.1f} s")
