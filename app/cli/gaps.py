"""``hookledger gaps`` and ``hookledger pull``: what should have happened and has not, and
asking counterparts for it.

Exit codes: 0 done; 1 something failed (a counterpart's error, a database that does not
answer); 2 usage or configuration (an unknown source, one that cannot pull).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from app.responses import dumps
from app.runtime import build_runtime
from app.services import gaps as gap_service
from app.services import pull as pull_service
from app.settings import Settings


def add_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "gaps",
        help="list what should have happened and has not",
        description="List each source's gaps: HTX orders not final gap_after_s after their last "
        "event, PingPong contracts past their value date neither settled nor canceled, TRON "
        "energy rental orders still created after their orderTime; with the last pull of each.",
    )
    p.add_argument("--source", metavar="SOURCE", help="only this source (a name in the config)")
    p.add_argument("--json", action="store_true", help="print JSON (for scripts), not a table")
    p = sub.add_parser(
        "pull",
        help="ask counterparts' APIs about gaps now",
        description="Ask each pulling source's counterpart (those with [sources.NAME.pull]) for "
        "the current state of its due gaps, or of one --order, and store each answer as an "
        "event with origin pull; print what was asked and what came of it.",
    )
    p.add_argument("--source", metavar="SOURCE", help="only this source (default: every one)")
    p.add_argument(
        "--order",
        metavar="ID",
        help="ask about this order (rental order) id, gap or not, now; needs --source",
    )


def run_gaps(settings: Settings, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    if args.source is not None and args.source not in settings.sources:
        print(
            f"hookledger: no source named {args.source!r}; known sources: {_known(settings)}",
            file=sys.stderr,
        )
        return 2
    runtime = build_runtime(settings)
    try:
        rows = gap_service.listing(runtime.engine, settings, source=args.source)
    finally:
        runtime.close()
    if args.json:
        out.write(dumps(rows).decode() + "\n")
        return 0
    _table(rows, out)
    return 0


def run_pull(settings: Settings, args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    if args.order is not None and args.source is None:
        print("hookledger: --order needs --source", file=sys.stderr)
        return 2
    names = [args.source] if args.source is not None else pull_service.pullable(settings)
    try:
        for name in names:
            pull_service.check_pullable(settings, name)
    except pull_service.NotPullable as exc:
        print(f"hookledger: {exc}", file=sys.stderr)
        return 2
    if not names:
        print("no source pulls (none has a [sources.NAME.pull] section)", file=out)
        return 0
    runtime = build_runtime(settings)
    try:
        results: list[pull_service.Asked] = []
        for name in names:
            idents = [args.order] if args.order is not None else None
            results.extend(pull_service.pull_source(runtime, name, idents=idents))
    finally:
        runtime.close()
    for asked in results:
        print(_line(asked), file=out)
    failed = sum(1 for a in results if a.failed)
    print(f"({len(results)} asked, {failed} failed)", file=out)
    return 1 if failed else 0


def _line(asked: pull_service.Asked) -> str:
    text = f"{asked.source} {asked.ident}: {asked.outcome}"
    if asked.events:
        text += " (" + ", ".join(f"{eid} {status}" for eid, status in asked.events) + ")"
    if asked.error:
        text += f": {asked.error}"
    return text


def _known(settings: Settings) -> str:
    return ", ".join(sorted(settings.sources)) or "none are configured"


def _table(rows: Sequence[dict[str, Any]], out: TextIO) -> None:
    columns = [
        ("source", 14),
        ("ident", 24),
        ("what", 26),
        ("state", 14),
        ("since", 19),
        ("last_pull", 14),
        ("attempts", 8),
        ("last_error", 50),
    ]
    print("  ".join(name.upper().ljust(width) for name, width in columns).rstrip(), file=out)
    for row in rows:
        pull = row["pull"] or {}
        values = {
            **row,
            "since": row["since"].isoformat()[:19].replace("T", " "),
            "last_pull": pull.get("last_outcome") or ("-" if row["pullable"] else "no pull"),
            "attempts": pull.get("attempts", 0),
            "last_error": " ".join(str(pull.get("last_error") or "").split()),
        }
        cells = [str(values[name])[:width].ljust(width) for name, width in columns]
        print("  ".join(cells).rstrip(), file=out)
    print(f"({len(rows)} gap{'s' if len(rows) != 1 else ''})", file=out)
