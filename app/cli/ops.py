"""``hookledger events ...`` and ``hookledger dlq ...``: the event log and dead letters.

Exit codes: 0 done; 1 something asked for could not be done (unknown event, refused replay or
discard; the output says which); 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import getpass
import math
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from sqlalchemy import select
from sqlmodel import Session, col

from app import kinds
from app.responses import dumps
from app.runtime import Runtime, build_runtime
from app.services import replay as service
from app.settings import Settings
from app.store import ops
from app.store import signals as signal_store
from app.store.db import read_only, utcnow
from app.store.models import InboundEvent, Signal
from app.timeparse import iso, parse_when

_MAX_LIMIT = 100_000


def _when(text: str) -> Any:
    try:
        return parse_when(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _days(text: str) -> float:
    try:
        days = float(text)
    except ValueError:
        days = float("nan")
    if not math.isfinite(days) or not 0 < days <= 36_500:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days between 0 and 36500")
    return days


def _positive(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= _MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to {_MAX_LIMIT}")
    return int(text)


def default_actor() -> str:
    """Who is acting: ``$HOOKLEDGER_ACTOR``, else ``user@host``."""
    explicit = os.environ.get("HOOKLEDGER_ACTOR")
    if explicit:
        return explicit
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


_WHEN_HELP = (
    "ISO 8601 (2026-11-20, which is its midnight UTC, or 2026-11-20T10:00:00Z), "
    "Unix seconds, or an age (30m, 2h, 7d ago)"
)
_SIGNAL_STATUSES = ("pending", "sending", "retrying", "delivered", "dead", "discarded")


def _filters(p: argparse.ArgumentParser, *, status: bool) -> None:
    p.add_argument("--source", metavar="SOURCE", help="only this source (a name in the config)")
    if status:
        p.add_argument(
            "--status",
            choices=ops.STATUSES,
            metavar="STATUS",
            help=f"only this status: {', '.join(ops.STATUSES)}",
        )
    p.add_argument(
        "--since", type=_when, metavar="WHEN", help=f"received at or after WHEN: {_WHEN_HELP}"
    )
    p.add_argument(
        "--until",
        type=_when,
        metavar="WHEN",
        help="received at or before WHEN (same forms as --since)",
    )


def _json(p: argparse.ArgumentParser, *, instead: str = "a table") -> None:
    p.add_argument("--json", action="store_true", help=f"print JSON (for scripts), not {instead}")


def _actor(p: argparse.ArgumentParser, doing: str) -> None:
    p.add_argument(
        "--actor",
        default=None,
        metavar="NAME",
        help=f"who is {doing}, as recorded (default: $HOOKLEDGER_ACTOR, else user@host)",
    )


def add_parsers(sub: Any) -> None:
    events = sub.add_parser(
        "events",
        help="the event log: list, show, prune",
        description="The event log: every callback received, its status and its ledger effects.",
    )
    verbs = events.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = verbs.add_parser(
        "list",
        help="list events, newest first",
        description="List events, newest first. When there are more than --limit, the list "
        "is cut and a note on standard error says so.",
    )
    _filters(p, status=True)
    p.add_argument(
        "--limit",
        type=_positive,
        default=100,
        metavar="N",
        help="at most N events, 1 to 100000 (default 100)",
    )
    _json(p)
    p.set_defaults(ops_func=cmd_events_list)
    p = verbs.add_parser(
        "show",
        help="one event: body, headers, attempts, actions, effects",
        description="One event: raw body, headers (secrets redacted), attempts, replays and "
        "discards, and ledger effects.",
    )
    p.add_argument("event_id", metavar="EVENT_ID", help="an event id (evt_...)")
    _json(p, instead="text")
    p.set_defaults(ops_func=cmd_events_show)
    p = verbs.add_parser(
        "prune",
        help="drop raw bodies of applied events older than N days",
        description="Drop the raw bodies of applied events received more than DAYS ago; "
        "their hashes, receipt times and ledger effects stay.",
    )
    p.add_argument(
        "--older-than",
        type=_days,
        required=True,
        metavar="DAYS",
        help="received more than DAYS days ago (a number, e.g. 90 or 0.5)",
    )
    p.add_argument("--dry-run", action="store_true", help="count only; change nothing")
    p.set_defaults(ops_func=cmd_events_prune)

    _add_signal_parsers(sub)
    _add_dlq_parsers(sub)


def _add_signal_parsers(sub: Any) -> None:
    signals = sub.add_parser(
        "signals",
        help="follow-up signals and their targets: list, show, pause, resume",
        description="Follow-up signals sent to targets, and each target's kill switch.",
    )
    verbs = signals.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = verbs.add_parser("list", help="signals, newest first, and each target's state")
    p.add_argument(
        "--status",
        choices=_SIGNAL_STATUSES,
        metavar="STATUS",
        help=f"only this status: {', '.join(_SIGNAL_STATUSES)}",
    )
    p.add_argument("--target", metavar="TARGET", help="only this target (a name in the config)")
    p.add_argument(
        "--limit",
        type=_positive,
        default=100,
        metavar="N",
        help="at most N signals, 1 to 100000 (default 100)",
    )
    _json(p)
    p.set_defaults(ops_func=cmd_signals_list)
    p = verbs.add_parser("show", help="one signal with its delivery log (JSON)")
    p.add_argument("signal_id", metavar="SIG_ID", help="a signal id (sig_N)")
    p.set_defaults(ops_func=cmd_signals_show)
    for verb, func, text, doing in (
        ("pause", cmd_signals_pause, "stop sending to a target (the kill switch)", "pausing"),
        ("resume", cmd_signals_resume, "send to a target again, queueing what waited", "resuming"),
    ):
        p = verbs.add_parser(verb, help=text)
        p.add_argument("target", metavar="TARGET", help="a target name from the config")
        p.add_argument("--reason", default=None, metavar="TEXT", help="why, as recorded")
        _actor(p, doing)
        p.set_defaults(ops_func=func)


def _add_dlq_parsers(sub: Any) -> None:
    dlq = sub.add_parser(
        "dlq",
        help="dead letters (events and signals): list, replay, discard",
        description="Dead letters: events and signals whose retries ran out.",
    )
    verbs = dlq.add_subparsers(dest="verb", required=True, metavar="VERB")
    p = verbs.add_parser("list", help="list dead events and dead signals")
    _filters(p, status=False)
    _json(p)
    p.set_defaults(ops_func=cmd_dlq_list)
    p = verbs.add_parser(
        "replay",
        help="process events again (an applied one is left as is)",
        description="Process dead events (or signals) again: name them, or give --all with "
        "optional filters. An event already applied is left as it is.",
    )
    p.add_argument(
        "event_ids",
        nargs="*",
        metavar="EVENT_ID",
        help="event ids (evt_...) or signal ids (sig_N) to replay",
    )
    p.add_argument("--all", action="store_true", help="every dead event matching the filters")
    _filters(p, status=False)
    p.add_argument(
        "--status",
        choices=("dead", "rejected"),
        default="dead",
        metavar="STATUS",
        help="with --all: dead (the default: dead events and dead signals) or rejected "
        "(rejected callbacks, parsed again under the current code and config)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="list what would be replayed and its ledger effects"
    )
    p.add_argument("--reason", default=None, metavar="TEXT", help="why, as recorded")
    _actor(p, "replaying")
    _json(p)
    p.set_defaults(ops_func=cmd_dlq_replay)
    p = verbs.add_parser("discard", help="give up on an event that is not applied")
    p.add_argument(
        "event_id", metavar="EVENT_ID", help="an event id (evt_...) or signal id (sig_N)"
    )
    p.add_argument("--reason", required=True, metavar="TEXT", help="why it is given up (required)")
    _actor(p, "discarding")
    p.set_defaults(ops_func=cmd_dlq_discard)


def run(settings: Settings, args: argparse.Namespace) -> int:
    since, until = getattr(args, "since", None), getattr(args, "until", None)
    if since is not None and until is not None and since > until:
        print(f"hookledger: --since {iso(since)} is after --until {iso(until)}", file=sys.stderr)
        return 2
    runtime = build_runtime(settings)
    try:
        problem = _unknown_source(runtime, getattr(args, "source", None))
        if problem is not None:
            print(f"hookledger: {problem}", file=sys.stderr)
            return 2
        return int(args.ops_func(runtime, args, sys.stdout))
    finally:
        runtime.close()


def _known(names: Sequence[str]) -> str:
    return ", ".join(sorted(names)) if names else "none are configured"


def _unknown_source(runtime: Runtime, source: str | None) -> str | None:
    """Why ``--source`` names nothing (a typo must not look like an empty log), or ``None``.
    A source no longer configured is known while the event log holds events of it."""
    if source is None or source in runtime.settings.sources:
        return None
    with Session(read_only(runtime.engine)) as session:
        stored = session.execute(
            select(col(InboundEvent.id)).where(col(InboundEvent.source) == source).limit(1)
        ).first()
    if stored is not None:
        return None
    return f"no source named {source!r}; known sources: {_known(list(runtime.settings.sources))}"


def _filter(args: argparse.Namespace) -> ops.EventFilter:
    return ops.EventFilter(
        source=args.source, status=getattr(args, "status", None), since=args.since, until=args.until
    )


_PAD = " " * 18


def _table(rows: Sequence[dict[str, Any]], out: TextIO) -> None:
    columns = [
        ("event_id", 28),
        ("source", 14),
        ("status", 10),
        ("type", 16),
        ("attempts", 8),
        ("received_at", 19),
        ("last_error", 50),
    ]
    print("  ".join(name.upper().ljust(width) for name, width in columns).rstrip(), file=out)
    for row in rows:
        cells = []
        for name, width in columns:
            value = "" if row.get(name) is None else str(row[name])
            if name == "received_at":
                value = value[:19].replace("T", " ")
            cells.append(value[:width].ljust(width))
        print("  ".join(cells).rstrip(), file=out)
    print(f"({len(rows)} event{'s' if len(rows) != 1 else ''})", file=out)


def _cut_note(shown: int, what: str, more: str) -> None:
    """Say on standard error (stdout stays clean for --json and pipes) that a list was cut."""
    print(
        f"hookledger: showing the newest {shown} {what}; there are more. {more}",
        file=sys.stderr,
    )


def cmd_events_list(runtime: Runtime, args: argparse.Namespace, out: TextIO) -> int:
    limit = max(1, args.limit)
    with Session(read_only(runtime.engine)) as session:
        rows = [ops.summary(r) for r in ops.list_events(session, _filter(args), limit=limit + 1)]
    cut = len(rows) > limit
    rows = rows[:limit]
    if args.json:
        out.write(dumps(rows).decode() + "\n")
    else:
        _table(rows, out)
    if cut:
        older = rows[-1]["received_at"][:19] + "Z"
        _cut_note(
            limit,
            "events",
            f"See more with --limit N (up to {_MAX_LIMIT}), or narrow the list with --source, "
            f"--status, --since or --until (e.g. --until {older} for older ones).",
        )
    return 0


def cmd_events_show(runtime: Runtime, args: argparse.Namespace, out: TextIO) -> int:
    try:
        with Session(read_only(runtime.engine)) as session:
            data = ops.detail(session, args.event_id, kinds.effect_counters())
    except ops.OpsError as exc:
        print(f"hookledger: {exc.message}", file=sys.stderr)
        return 1
    if args.json:
        out.write(dumps(data).decode() + "\n")
        return 0
    for key in (
        "event_id",
        "source",
        "source_kind",
        "type",
        "event",
        "status",
        "attempts",
        "idempotency_key",
        "received_at",
        "processed_at",
        "next_attempt_at",
        "client_ip",
        "content_type",
        "last_error",
    ):
        print(f"{key:>16}: {'' if data.get(key) is None else data[key]}", file=out)
    print("         headers:", file=out)
    for name, value in data["headers"].items():
        print(f"                  {name}: {value}", file=out)
    body = data["body"]
    print(f"            body: ({body['sha256']})", file=out)
    print(
        "                  "
        + str(body.get("text") or body.get("base64") or f"pruned at {body.get('pruned_at')}"),
        file=out,
    )
    print("        attempts:", file=out)
    for a in data["attempts_log"]:
        print(
            f"{_PAD}#{a['attempt']} {a['finished_at'][:19]} {a['outcome']} "
            f"{a['error'] or ''}".rstrip(),
            file=out,
        )
    print("         actions:", file=out)
    for a in data["actions"]:
        print(
            f"{_PAD}{a['at'][:19]} {a['action']} -> {a['outcome']} "
            f"by {a['actor']}: {a['reason'] or ''}".rstrip(),
            file=out,
        )
    print("         effects:", file=out)
    for p in data["effects"]["postings"]:
        print(
            f"{_PAD}{p['account_id']} {p['currency']} {p['amount']} (balance {p['balance']})",
            file=out,
        )
    _print_conflicts(data["conflicts"], out)
    return 0


def _print_conflicts(conflicts: Sequence[dict[str, Any]], out: TextIO) -> None:
    """The other bodies sent under the event's key, each with the fields that differ."""
    print("       conflicts:", file=out)
    for c in conflicts:
        print(
            f"{_PAD}body {c['body_sha256']} sent {c['count']} time(s), "
            f"{c['first_at'][:19]} to {c['last_at'][:19]}",
            file=out,
        )
        diff = c["diff"]
        for f in diff["fields"]:
            print(f"{_PAD}  {f['field']}: {f['old']} -> {f['new']}", file=out)
        if diff.get("more"):
            print(f"{_PAD}  ... and {diff['more']} more field(s)", file=out)
        if diff.get("note"):
            print(f"{_PAD}  ({diff['note']})", file=out)


def cmd_events_prune(runtime: Runtime, args: argparse.Namespace, out: TextIO) -> int:
    now = utcnow()
    cutoff = ops.days_ago(now, args.older_than)
    total = 0
    if args.dry_run:
        with Session(runtime.engine) as session:
            total = ops.count_prunable(session, older_than=cutoff)
    while not args.dry_run:
        with Session(runtime.engine) as session, session.begin():
            batch = ops.prunable(session, older_than=cutoff, limit=1000)
            total += ops.prune(session, batch, now=now)
        if sys.stderr.isatty():
            sys.stderr.write(f"\rpruned {total} bodies")
        if len(batch) < 1000:
            break
    verb = "would prune" if args.dry_run else "pruned"
    print(
        f"{verb} the raw bodies of {total} event(s) received before "
        f"{iso(cutoff)}; hashes and receipt times stay",
        file=out,
    )
    return 0


def cmd_dlq_list(runtime: Runtime, args: argparse.Namespace, out: TextIO) -> int:
    flt = ops.EventFilter(source=args.source, status="dead", since=args.since, until=args.until)
    with Session(read_only(runtime.engine)) as session:
        rows = [
            {"kind": "event", **ops.summary(r)}
            for r in ops.list_events(session, flt, limit=_MAX_LIMIT + 1)
        ]
        dead_signals = [
            {"kind": "signal", **signal_store.summary(s)}
            for s in signal_store.list_signals(
                session,
                status="dead",
                source=args.source,
                since=args.since,
                until=args.until,
                limit=_MAX_LIMIT + 1,
            )
        ]
    more = "Narrow the list with --source, --since or --until."
    if len(rows) > _MAX_LIMIT:
        rows = rows[:_MAX_LIMIT]
        _cut_note(_MAX_LIMIT, "dead events", more)
    if len(dead_signals) > _MAX_LIMIT:
        dead_signals = dead_signals[:_MAX_LIMIT]
        _cut_note(_MAX_LIMIT, "dead signals", more)
    if args.json:
        out.write(dumps(rows + dead_signals).decode() + "\n")
        return 0
    _table(rows, out)
    if dead_signals:
        print("\ndead signals:", file=out)
        _signal_table(dead_signals, out)
    return 0


def _signal_table(rows: Sequence[dict[str, Any]], out: TextIO) -> None:
    print(
        f"{'SIGNAL':<10}  {'TARGET':<14}  {'RULE':<20}  {'STATUS':<10}  "
        f"{'ATTEMPTS':<8}  LAST_ERROR",
        file=out,
    )
    for r in rows:
        print(
            f"{r['signal_id']:<10}  {r['target'][:14]:<14}  {r['rule'][:20]:<20}  "
            f"{r['status']:<10}  {r['attempts']:<8}  {(r['last_error'] or '')[:60]}".rstrip(),
            file=out,
        )


def cmd_signals_list(runtime: Runtime, args: argparse.Namespace, out: TextIO) -> int:
    targets = runtime.settings.file.targets
    with Session(read_only(runtime.engine)) as session:
        if args.target is not None and args.target not in targets:
            sent = signal_store.list_signals(session, target=args.target, limit=1)
            if not sent:
                print(
                    f"hookledger: no target named {args.target!r}; known targets: "
                    f"{_known(list(targets))}",
                    file=sys.stderr,
                )
                return 2
        rows = [
            signal_store.summary(s)
            for s in signal_store.list_signals(
                session, status=args.status, target=args.target, limit=args.limit + 1
            )
        ]
        states = signal_store.target_states(session)
    cut = len(rows) > args.limit
    rows = rows[: args.limit]
    if cut:
        _cut_note(
            args.limit,
            "signals",
            f"See more with --limit N (up to {_MAX_LIMIT}), or narrow with --status or --target.",
        )
    if args.json:
        out.write(dumps(rows).decode() + "\n")
        return 0
    for name in sorted(runtime.settings.file.targets):
        state = states.get(name)
        flag = (
            f"PAUSED by {state.changed_by}: {state.reason or ''}"
            if state and state.paused
            else "active"
        )
        print(f"target {name}: {flag}", file=out)
    _signal_table(rows, out)
    return 0


def cmd_signals_show(runtime: Runtime, args: argparse.Namespace, out: TextIO) -> int:
    signal_id = signal_store.parse_signal_id(args.signal_id)
    with Session(read_only(runtime.engine)) as session:
        sig = session.get(Signal, signal_id) if signal_id is not None else None
        if sig is None:
            print(f"hookledger: no signal {args.signal_id}", file=sys.stderr)
            return 1
        data = {
            **signal_store.summary(sig),
            "payload": sig.payload,
            "attempts_log": signal_store.attempts(session, sig.id or 0),
        }
    out.write(dumps(data).decode() + "\n")
    return 0


def cmd_signals_pause(runtime: Runtime, args: argparse.Namespace, out: TextIO) -> int:
    return _switch(runtime, args, out, paused=True)


def cmd_signals_resume(runtime: Runtime, args: argparse.Namespace, out: TextIO) -> int:
    return _switch(runtime, args, out, paused=False)


def _switch(runtime: Runtime, args: argparse.Namespace, out: TextIO, *, paused: bool) -> int:
    targets = runtime.settings.file.targets
    if args.target not in targets:
        print(
            f"hookledger: no target named {args.target!r}; known targets: {_known(list(targets))}",
            file=sys.stderr,
        )
        return 2
    actor = args.actor or default_actor()
    with Session(runtime.engine) as session, session.begin():
        signal_store.set_paused(
            session, args.target, paused=paused, actor=actor, reason=args.reason, now=utcnow()
        )
        waiting = [] if paused else signal_store.pending_of_target(session, args.target)
    for signal_id in waiting:
        runtime.events.enqueue_signal(signal_id)
    state = (
        "paused: nothing is sent to it until resumed"
        if paused
        else f"resumed; {len(waiting)} signal(s) queued"
    )
    print(f"target {args.target} {state}", file=out)
    return 0


def cmd_dlq_replay(runtime: Runtime, args: argparse.Namespace, out: TextIO) -> int:
    if args.all == bool(args.event_ids):
        what = "not both" if args.all else "to say which events"
        print(
            f"hookledger: give EVENT_ID... or --all (with optional filters), {what}",
            file=sys.stderr,
        )
        return 2
    ids = service.dead_letter_ids(runtime, _filter(args)) if args.all else list(args.event_ids)
    actor = args.actor or default_actor()
    results = []
    live = sys.stderr.isatty() and len(ids) > 1
    for n, event_id in enumerate(ids, 1):
        results += service.replay_many(
            runtime, [event_id], actor=actor, reason=args.reason, dry_run=args.dry_run
        )
        if live:
            sys.stderr.write(f"\r{'previewed' if args.dry_run else 'replayed'} {n}/{len(ids)}")
    if live:
        sys.stderr.write("\n")
    if args.json:
        out.write(dumps([r.as_dict() for r in results]).decode() + "\n")
    else:
        for r in results:
            line = f"{r.event_id}  {r.outcome}"
            if r.message:
                line += f"  ({r.message})"
            print(line, file=out)
            for e in r.effects:
                print(
                    f"    {e['account_id']} {e['currency']} {e['amount']} [{e['tran_type']}]",
                    file=out,
                )
        done = sum(r.outcome in ("requeued", "would_replay") for r in results)
        duplicates = sum(r.outcome == "duplicate" for r in results)
        if duplicates:
            print(f"{duplicates} rejected event(s) were duplicates of stored ones", file=out)
        verb = "would replay" if args.dry_run else "replayed"
        print(f"{verb} {done} of {len(results)} event(s)", file=out)
    return 1 if any(r.outcome == "error" for r in results) else 0


def cmd_dlq_discard(runtime: Runtime, args: argparse.Namespace, out: TextIO) -> int:
    try:
        result = service.discard(
            runtime, args.event_id, actor=args.actor or default_actor(), reason=args.reason
        )
    except ops.OpsError as exc:
        print(f"hookledger: {exc.message}", file=sys.stderr)
        return 1
    print(f"{result.event_id}  {result.outcome}", file=out)
    return 0
