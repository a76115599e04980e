"""A fail point for worker processes: SIGKILL at a chosen moment of a ledger transaction.

The fault tests start workers as ``python -c "from tests.faults.failpoint import main; main()"
worker ...`` instead of ``hookledger worker ...``; ``main`` installs a SQLAlchemy session hook,
then runs the real command line. Nothing of this is in the product.

Environment:
- ``HOOKLEDGER_FAILPOINT``: ``before_commit`` (the batch's SQL, ledger postings included, has
  been sent; COMMIT has not) or ``after_commit`` (COMMIT has returned; RQ has not yet heard
  that the job finished).
- ``HOOKLEDGER_FAILPOINT_ARM``: a file; the point fires once, in the first process that removes
  it, and only in a transaction that posted to the ledger. ``before_commit`` then writes the
  ids of the journal entries the doomed transaction inserted to ``<arm>.killed``.
- ``HOOKLEDGER_FAILPOINT_KILL``: ``self`` (the process running the job: the work horse of a
  forking worker, the worker itself of a simple one) or ``worker`` (the parent worker first,
  then the horse: the whole worker gone at once).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

POINTS = ("before_commit", "after_commit")


def _posts_to_ledger(session: Session) -> bool:
    from app.store.journal import _WRITER, LedgerWriter

    writer = session.info.get(_WRITER)
    return isinstance(writer, LedgerWriter) and writer.has_posted()


def _fire(arm: str, victim: str, session: Session | None = None) -> None:
    try:
        os.unlink(arm)  # exactly one process wins the file
    except FileNotFoundError:
        return
    if session is not None:
        # Before COMMIT: say which journal entries this transaction wrote (the rows whose xmin
        # is this transaction), so the test can check exactly those never appear; a retry of
        # the same job may commit other entries before the test looks.
        ids = session.connection().exec_driver_sql(
            "SELECT id FROM journal_entries WHERE xmin::text = mod(txid_current(), 4294967296)::text"
        )
        with open(f"{arm}.killed.tmp", "w") as out:
            out.write(" ".join(str(entry_id) for (entry_id,) in ids))
        os.replace(f"{arm}.killed.tmp", f"{arm}.killed")  # whole, or not there yet
    if victim == "worker" and os.getppid() > 1:
        parent = os.getppid()
        # Only a forked horse has a worker for a parent; a simple worker's parent is the test.
        if _is_worker(parent):
            os.kill(parent, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _is_worker(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return b"tests.faults.failpoint" in cmdline.read()
    except OSError:
        return False


def install() -> None:
    point = os.environ.get("HOOKLEDGER_FAILPOINT")
    arm = os.environ.get("HOOKLEDGER_FAILPOINT_ARM")
    victim = os.environ.get("HOOKLEDGER_FAILPOINT_KILL", "self")
    if not point or not arm:
        return
    if point not in POINTS:
        raise SystemExit(f"HOOKLEDGER_FAILPOINT must be one of {POINTS}, not {point!r}")
    import app.store.journal  # noqa: F401 - its before_commit hook (the ledger write) runs first

    def hook(session: Session, *_: Any) -> None:
        if point == "before_commit" and session.in_nested_transaction():
            return
        if _posts_to_ledger(session):
            _fire(arm, victim, session if point == "before_commit" else None)

    event.listen(Session, point, hook)


def main() -> None:
    install()
    from app.cli import main as cli_main

    raise SystemExit(cli_main(sys.argv[1:]))
