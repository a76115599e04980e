"""Garbage-collector settings for the long-running processes (web, worker, sweeper).

A web or worker process holds a few hundred thousand long-lived objects once its imports are
done (SQLAlchemy, pydantic, Starlette, RQ). CPython's default thresholds (700, 10, 10) walk
all of them in every full collection, which here took about 80 ms of stopped event loop, a
dozen times in ten seconds of load, finding nothing to free: that was the receipt p99.
``settle_heap`` moves what start-up built out of the collector's sight (``gc.freeze``) and
collects the young generation less often. Reference cycles are still collected; receipts and
jobs make few of them, so the heap stays flat (``bench.memory``).

A worker collects its young generation more often (``WORKER_GEN0_THRESHOLD``): every batch
builds SQLAlchemy statements, and an expression caches its comparator, a reference cycle, so a
batch leaves a few dozen cyclic objects that only a collection frees. At 50,000 allocations
between collections they piled up to about 20 MiB of resident size before the first one
(``bench.memory``, 270,000 events); at 5,000 it levels off after warm-up. A young
collection only walks what is not frozen, well under a millisecond between jobs.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000  # allocations between young collections (CPython's default: 700)
WORKER_GEN0_THRESHOLD = 5_000
OLDER_THRESHOLDS = (20, 20)


_settled = False


def settle_heap(gen0_threshold: int = GEN0_THRESHOLD) -> None:
    """Call when start-up is done, before the first request or job. Once per process: a test
    session that starts many apps pays for one full collection, not one per app."""
    global _settled  # noqa: PLW0603 - once per process
    if _settled:
        return
    _settled = True
    gc.collect()
    gc.freeze()
    gc.set_threshold(gen0_threshold, *OLDER_THRESHOLDS)
