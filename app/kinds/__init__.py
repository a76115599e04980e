"""Source kinds as plugins: one package per kind behind one interface (``base.SourceKind``),
and the registry that maps a config's ``kind`` to it.

The shipped kinds (``htx``, ``pingpong``, ``trx-energy``) register when this package is
imported; more can be added with ``register`` before settings are loaded. Nothing outside a
kind's package branches on a kind's name: the edge, the worker, rules, the accountants' API,
``ledger verify`` and ``events show`` all ask the registry.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from sqlmodel import Session

from app.domain.payloads import ParsedEvent, body_digest, check_media_type, decode_body
from app.kinds.base import SourceKind
from app.store.ops import EffectCounter
from app.store.verify import Check, Report, verify

_REGISTRY: dict[str, SourceKind] = {}


def register(kind: SourceKind) -> None:
    """Make ``kind`` available under ``kind.name``; a second kind of one name is refused."""
    existing = _REGISTRY.get(kind.name)
    if existing is not None and existing is not kind:
        raise ValueError(f"a source kind named {kind.name!r} is registered already")
    _REGISTRY[kind.name] = kind


def unregister(name: str) -> None:
    """Forget the kind ``name`` (for tests that register one of their own)."""
    _REGISTRY.pop(name, None)


def get(name: str) -> SourceKind:
    """The kind registered as ``name``; ``KeyError`` naming the known ones otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown source kind {name!r}; known: {', '.join(names())}") from None


def names() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def every() -> tuple[SourceKind, ...]:
    return tuple(_REGISTRY[name] for name in names())


def canonical_events() -> frozenset[str]:
    """Every canonical event name of every registered kind."""
    return frozenset(event for kind in _REGISTRY.values() for event in kind.canonical_events)


def accepted_media_type(kind: str, content_type: str | None) -> str:
    """The media type of a callback to a source of ``kind``; raises ``UnsupportedMedia``."""
    return check_media_type(get(kind).media_types, content_type)


def parse_event(kind: str, body: bytes, media: str) -> ParsedEvent:
    """Decode and validate a callback body of source kind ``kind``.

    Raises ``BadRequest`` (cannot decode) or ``ValidationFailed`` (schema breach). An event
    whose kind gives no idempotency key is keyed by the body's SHA-256."""
    parsed = get(kind).parse(decode_body(body, media))
    if not parsed.idempotency_key:
        parsed = replace(parsed, idempotency_key=f"sha256:{body_digest(body)}")
    return parsed


def ledger_checks(quote_currencies: tuple[str, ...]) -> list[Check]:
    """Every kind's ``ledger verify`` checks, ready for ``app.store.verify.verify``."""
    return [partial(kind.verify, quote_currencies=quote_currencies) for kind in every()]


def effect_counters() -> list[EffectCounter]:
    """Every kind's effect-row counters, for ``app.store.ops.detail``."""
    return [kind.effects for kind in every()]


def verify_ledger(session: Session, quote_currencies: tuple[str, ...]) -> Report:
    """``ledger verify``: the journal's invariants and every kind's checks."""
    return verify(session, ledger_checks(quote_currencies))


def _register_shipped() -> None:
    from app.kinds.htx import Htx
    from app.kinds.pingpong import PingPong
    from app.kinds.trx_energy import TrxEnergy

    for kind in (Htx(), PingPong(), TrxEnergy()):
        register(kind)


_register_shipped()
