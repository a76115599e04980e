"""The worker classes and how worker processes stop.

RQ jobs carry only ids; a job asks ``app.runtime.get_runtime()`` for what it needs.
``SimpleWorker`` (the default) runs jobs in the worker process itself, so the engine's pool is
reused from job to job; ``ForkingWorker`` (``hookledger worker --fork``) runs each in a forked
work horse.

Stopping: the first SIGTERM or SIGINT is a warm stop (a worker finishes the job it is running,
at most one batch; the sweeper the sweep under way) and the process exits with status 0; a
second one ends it at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import structlog
from rq import Queue, SimpleWorker, Worker
from rq.job import Job
from rq.worker import BaseWorker

import app.kinds  # noqa: F401 - every source kind's tables, on the metadata
from app.runtime import current_runtime

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """While open, the first SIGTERM or SIGINT sets the yielded event (a warm stop: the caller
    finishes what it is doing, then returns) and a second one ends the process at once. On
    leaving, the interpreter's own handling of both is back (SIGTERM ends the process, SIGINT
    raises ``KeyboardInterrupt``). Installs signal handlers, so only the main thread may call
    it."""
    stop = threading.Event()

    def request(_signum: int, _frame: FrameType | None) -> None:
        stop.set()
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)

    for sig in STOP_SIGNALS:
        signal.signal(sig, request)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)


# How long the worker's command listener waits for a message at a time; it bounds the wait
# for that listener when the worker stops (see ``_HookledgerWorker.subscribe``).
COMMAND_POLL_S = 0.5


class _HookledgerWorker(BaseWorker):
    """What both worker classes add to RQ's: job ids on log lines, and a prompt stop."""

    # Set by the first SIGTERM or SIGINT RQ's handlers receive (RQ's own flag is set only
    # when a job is running); ``hookledger worker`` then exits instead of waiting for Redis.
    stop_requested = False

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = True
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]

    def execute_job(self, job: Job, queue: Queue) -> None:
        # Every log line written while a job runs (ours and RQ's own) carries its ``job_id``.
        with structlog.contextvars.bound_contextvars(job_id=job.id):
            super().execute_job(job, queue)

    def subscribe(self) -> None:
        """Listen for RQ's worker commands (``rq.command``), as RQ does, but poll every
        ``COMMAND_POLL_S`` seconds instead of every 60.

        On its way out a worker unsubscribes, then stops the listening thread and waits for
        it. When the thread reads the unsubscribe reply before it is told to stop, it is no
        longer subscribed and starts a fresh wait of one poll; the stop waits that out too
        (redis-py's ``PubSubWorkerThread.stop`` joins the thread). With RQ's 60 s poll a stop
        that loses this race takes a minute, past Kubernetes' 30 s grace period; with this one
        it takes at most ``COMMAND_POLL_S`` longer."""
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        # RQ declares the attribute as None; it holds the thread while the worker runs.
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]
            sleep_time=COMMAND_POLL_S,
            daemon=True,
            exception_handler=self._pubsub_exception_handler,
        )


class InProcessWorker(_HookledgerWorker, SimpleWorker):
    """RQ's ``SimpleWorker`` (jobs in the worker process: the pool is reused from job to job)."""


class ForkingWorker(_HookledgerWorker, Worker):
    """RQ's forking worker, safe for the runtime's connection pool.

    A forked work horse must not use the database connections it inherited: they belong to the
    parent (and to the next horse). ``dispose(close=False)`` gives the horse a pool of its own
    without closing the parent's sockets. redis-py resets its pool in a new process by itself.
    """

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        runtime = current_runtime()
        if runtime is not None:
            runtime.engine.dispose(close=False)
        super().main_work_horse(job, queue)
