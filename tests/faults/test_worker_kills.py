"""SIGKILL of the work horse, and of the whole worker, just before and just after the ledger
commit: every event still has exactly one effect.

The kill comes from a fail point (tests/faults/failpoint.py) inside the worker's first
transaction that posts to the ledger: ``before_commit`` fires after every statement of the
batch (postings included) has been sent and before COMMIT; ``after_commit`` fires once COMMIT
has returned and before RQ hears the job finished. Recovery is the product's own: RQ's
handling of a dead horse, a replacement worker as a supervisor would start, and the sweeper.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.cluster import Acks, Cluster, make_deliveries, send_all
from tests.processes import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.slow]

VICTIMS = {
    # name: (forking worker?, what the fail point kills)
    "work-horse": (True, "self"),
    "forking-worker-and-horse": (True, "worker"),
    "simple-worker": (False, "self"),
}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("point", ["before_commit", "after_commit"])
@pytest.mark.parametrize("victim", list(VICTIMS))
def test_sigkill_at_the_ledger_commit_leaves_exactly_one_effect(
    cluster: Cluster, tmp_path: Path, point: str, victim: str
) -> None:
    fork, kill = VICTIMS[victim]
    base = cluster.web("web")
    arm = tmp_path / "failpoint-armed"
    cluster.worker("worker", fork=fork, failpoint=point, kill=kill, arm=arm)
    deliveries = make_deliveries(60)
    acks = Acks()
    send_all([base], deliveries, acks, concurrency=8)
    wait_until(lambda: not arm.exists(), 60, "the fail point to fire")

    if victim == "work-horse":
        # RQ's worker sees its horse die and lives on; the job is failed and retried.
        assert cluster.alive("worker"), cluster.logs("worker")
    else:
        wait_until(lambda: not cluster.alive("worker"), 10, "the worker to die")
    if point == "before_commit":
        # RQ may already have retried the job in a new horse and committed it: what must be
        # absent is what the killed transaction itself wrote (its reserved ids are never
        # reused, so they can only appear if it committed).
        record = Path(f"{arm}.killed")
        wait_until(record.exists, 10, "the fail point to record the doomed entries")
        killed = [int(i) for i in record.read_text().split()]
        assert killed, "the fail point fired in a transaction that had written entries"
        left = cluster.scalar(
            "SELECT count(*) FROM journal_entries WHERE id = ANY(:ids)", ids=killed
        )
        assert left == 0, "the killed transaction must leave nothing behind"
    else:
        entries = cluster.scalar("SELECT count(*) FROM journal_entries")
        assert entries > 0, "the killed worker's transaction had committed"

    if victim != "work-horse":
        cluster.worker("replacement", fork=fork)  # what systemd's Restart= would do
    cluster.sweeper()
    cluster.wait_settled(len(deliveries))
    cluster.assert_exactly_once(deliveries, acks)

    # A job delivered again after all that (RQ is at-least-once too) changes nothing.
    cluster.redeliver_jobs()
    cluster.assert_exactly_once(deliveries, acks)
