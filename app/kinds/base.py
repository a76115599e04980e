"""The interface every source kind implements, and the values it trades in.

A source kind is everything hookledger knows about one family of callbacks (HTX order
updates, PingPong contract lifecycles, ...). The pipeline around it is generic: the web edge
asks the kind which media types it takes and how a body becomes a ``ParsedEvent`` (schema,
idempotency key, canonical event); the worker asks which aggregate the event changes, locks it
ahead for a whole batch, and lets the kind apply the event (merge the aggregate, record its
effect rows, post its journal entry); rules match on the facts the kind states; the
accountants' API lists the kind's aggregates through its listings; ``ledger verify`` runs its
checks; ``events show`` shows its effects; ``hookledger up`` prints its sample.

A kind implements the abstract methods and sets the class attributes; the rest have defaults
that mean "this kind has none". Kinds register in ``app.kinds`` (``register``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from sqlmodel import Session, SQLModel

from app.domain.payloads import FORM, JSON, ParsedEvent
from app.errors import HookledgerError
from app.store.aggregates import Aggregate
from app.store.models import InboundEvent

__all__ = [
    "FORM",
    "JSON",
    "Aggregate",
    "ApplyContext",
    "Breach",
    "Gap",
    "Listing",
    "PullFailed",
    "Pulled",
    "SourceKind",
]


class PullFailed(HookledgerError):
    """A counterpart's API did not answer what was asked: an error answer (``ERROR: ...``, an
    HTX ``status: error``), a rate limit (429), a server error (5xx), a timeout or an answer
    that cannot be read. ``outcome`` names which, as ``pull_state.last_outcome`` records it;
    the message says what came back and never carries a credential."""

    def __init__(self, message: str, *, outcome: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.outcome = outcome  # error | rate_limited | server_error | timeout | refused


@dataclass(frozen=True, slots=True)
class ApplyContext:
    """What applying one event needs besides the session and the event."""

    account_id: str  # the payload's account, else the source's
    quote_currencies: tuple[str, ...]
    now: datetime


@dataclass(frozen=True, slots=True)
class Listing:
    """One collection of a kind's aggregates in the accountants' API:
    ``GET /account/v1/{name}?account_id=&page=&page_size=``, rows by ascending id, and with
    ``detail``, ``GET /account/v1/{name}/{source}/{ident}``: ``detail(session, source, ident)``
    returns the aggregate's account and its full record, or None when there is none."""

    name: str  # plural: "orders"
    singular: str  # "order"
    model: type[SQLModel]
    row: Callable[[Any], dict[str, Any]]
    detail: Callable[[Session, str, str], tuple[str, dict[str, Any]] | None] | None = None
    detail_param: str = "ident"  # the path parameter's name: /orders/{source}/{order_id}


Breach = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Gap:
    """Something that should have happened and has not (CONTRACT section 10): an order not
    final long after its last event, a contract past its value date, a rental order still
    created after its term. ``ident`` is what the kind's pull asks the counterpart about."""

    source: str
    kind: str
    ident: str  # the order id, position id or rental id, as the counterpart names it
    what: str  # "order not final", "contract past value date", ...
    since: datetime  # when it became a gap
    state: str  # the aggregate's current state, as stored
    account_id: str


@dataclass(frozen=True, slots=True)
class Pulled:
    """What a counterpart's API answered about one ``ident``: the bodies to feed through the
    receipt path as ``origin = pull`` events (each a body a callback could have carried, so it
    gets the same idempotency key), or ``missing`` when the counterpart does not know it."""

    bodies: tuple[bytes, ...] = ()
    media_type: str = JSON
    missing: bool = False


class SourceKind(ABC):
    """One source kind. Instances are stateless; one is registered per kind."""

    name: ClassVar[str]  # the config's ``kind``: "htx"
    media_types: ClassVar[frozenset[str]] = frozenset({JSON})
    canonical_events: ClassVar[frozenset[str]]  # every event name ``parse`` can give
    sample_body: ClassVar[dict[str, Any]]  # a valid body, for ``hookledger sample`` and ``up``
    tables: ClassVar[tuple[type[SQLModel], ...]] = ()  # the kind's own tables
    business_types: ClassVar[frozenset[str]] = frozenset()  # its postings' ``business_type``
    listings: ClassVar[tuple[Listing, ...]] = ()

    @abstractmethod
    def parse(self, data: dict[str, Any]) -> ParsedEvent:
        """Validate a decoded body; return the event (``event`` None for a type the kind does
        not know: stored, ``unhandled``). Raises ``ValidationFailed``."""

    def aggregate(
        self, row: InboundEvent, parsed: ParsedEvent, ctx: ApplyContext
    ) -> Aggregate | None:
        """The aggregate ``parsed`` changes, created and locked ahead for its batch; None
        when it changes none (a deposit, say)."""
        return None

    @abstractmethod
    def apply(
        self, session: Session, row: InboundEvent, parsed: ParsedEvent, ctx: ApplyContext
    ) -> None:
        """Apply a known event (``parsed.event`` is set) inside the caller's transaction:
        merge the aggregate, record the event's effect rows, post its journal entry
        (``app.store.aggregates.post``). Raises ``PermanentError`` when it never can."""

    def rule_amount(self, parsed: ParsedEvent) -> Decimal | None:
        """The event's own amount, which rules' ``min_amount``/``max_amount`` compare."""
        return None

    def verify(
        self, session: Session, breach: Breach, quote_currencies: tuple[str, ...]
    ) -> dict[str, int]:
        """Report (``breach(text)``) every way the kind's tables disagree with the ledger;
        return how many rows of what it checked (``{"orders": 12}``)."""
        return {}

    def effects(self, session: Session, event_ids: Sequence[str]) -> dict[str, int]:
        """How many rows of each of the kind's effect tables name these events."""
        return {}

    def gaps(
        self, session: Session, source: str, *, gap_after_s: float, now: datetime, limit: int
    ) -> list[Gap]:
        """What should have happened for ``source`` and has not, oldest first, at most
        ``limit``; through indexes, so it stays cheap on millions of rows."""
        return []

    can_pull: ClassVar[bool] = False  # the counterpart has an API to ask (``pull``)

    async def pull(self, client: Any, pull: Any, ident: str) -> Pulled:
        """Ask the counterpart's API (``pull``: the source's ``PullConfig``; ``client``: an
        ``httpx.AsyncClient`` behind the outbound guard) for the current state of ``ident``.
        Raises ``PullFailed`` on an error answer (retried later with backoff)."""
        raise NotImplementedError(f"{self.name} has no pull API")
