"""Journals for accountants' tools: the ledger as a beancount or an hledger file.

Names: a hookledger account id becomes ``Assets:Hookledger:<component>``, and a currency a
commodity, by ``account_name`` and ``commodity``; both are deterministic, and a name that two
ids would share is refused (``JournalError``) rather than merged.

Entries are written in ``(date, id)`` order, each as one balanced transaction. After each UTC
day, every (account, currency) the day touched gets a balance assertion of its running balance
computed here, in that same order, so the assertions hold by construction: beancount's
``balance`` directive (dated the next day, as it asserts the balance at the start of its date)
and, for hledger, a transaction of zero-amount postings with ``= BALANCE`` written after the
day's entries (hledger checks assertions in date order, then file order).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import TextIO

from app.domain.money import canonical, exact
from app.errors import HookledgerError
from app.store.models import JournalEntry, LedgerPosting

FORMATS = ("beancount", "hledger")
ACCOUNT_ROOT = "Assets:Hookledger"
_DAY = 86_400
_COMPONENT = re.compile(r"[A-Z0-9][A-Za-z0-9-]*")
_COMMODITY = re.compile(r"[A-Z][A-Z0-9]{1,23}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Key = tuple[str, str]  # (account id, currency)


class JournalError(HookledgerError):
    """A journal cannot be written truthfully: two ids share a name, or the balances computed
    from the entries differ from the ledger's own balance rows."""


def _suffix(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def account_name(account_id: str) -> str:
    """The beancount/hledger account of a hookledger account id: ``Assets:Hookledger:`` and one
    component. An id that is already a valid component (a capital letter or digit, then letters,
    digits and hyphens) is kept as it is (``1001``); any other has each character outside
    ``[A-Za-z0-9-]`` replaced by ``-``, its first letter capitalised (``X`` put first when it
    starts with neither a letter nor a digit), and ``-`` plus the first 8 hex digits of the
    SHA-256 of the id appended (``htx-main:venue`` -> ``Htx-main-venue-<hash>``)."""
    if _COMPONENT.fullmatch(account_id):
        return f"{ACCOUNT_ROOT}:{account_id}"
    clean = re.sub(r"[^A-Za-z0-9-]", "-", account_id)
    if clean[:1].isalpha():
        clean = clean[0].upper() + clean[1:]
    elif not clean[:1].isdigit():
        clean = "X" + clean
    return f"{ACCOUNT_ROOT}:{clean}-{_suffix(account_id)}"


def commodity(currency: str) -> str:
    """The commodity of a currency code: kept when it is 2 to 24 capital letters and digits
    starting with a letter (``BTC``, ``USDT``); otherwise ``X``, its letters and digits
    upper-cased (at most 12), and the first 8 hex digits, upper-cased, of its SHA-256."""
    if _COMMODITY.fullmatch(currency):
        return currency
    kept = re.sub(r"[^A-Za-z0-9]", "", currency).upper()[:12]
    return f"X{kept}{_suffix(currency).upper()}"


class _Names:
    """Each id's name, checked to be one-to-one."""

    def __init__(self) -> None:
        self.accounts: dict[str, str] = {}
        self.commodities: dict[str, str] = {}
        self._taken: dict[str, str] = {}

    def _name(self, cache: dict[str, str], kind: str, ident: str, name: str) -> str:
        owner = self._taken.setdefault(f"{kind}:{name}", ident)
        if owner != ident:
            raise JournalError(f"{kind} {ident!r} and {owner!r} would both be named {name}")
        cache[ident] = name
        return name

    def account(self, account_id: str) -> str:
        name = self.accounts.get(account_id)
        return name or self._name(self.accounts, "account", account_id, account_name(account_id))

    def commodity(self, currency: str) -> str:
        name = self.commodities.get(currency)
        return name or self._name(self.commodities, "commodity", currency, commodity(currency))


def _day_text(day: int) -> str:
    return datetime.fromtimestamp(day * _DAY, UTC).date().isoformat()


def _one_line(text: str) -> str:
    return _CONTROL.sub(" ", text).strip()


class _Syntax:
    """What differs between the two formats; ``write_journal`` does the rest."""

    def __init__(self, out: TextIO, names: _Names) -> None:
        self.out, self.names = out, names

    def amount(self, value: Decimal, currency: str) -> str:
        return f"{canonical(value)} {self.names.commodity(currency)}"


class _Beancount(_Syntax):
    def opens(self, first_use: Mapping[str, int]) -> None:
        for account_id, date in sorted(first_use.items(), key=lambda x: (x[1] // _DAY, x[0])):
            name = self.names.account(account_id)
            self.out.write(f"{_day_text(date // _DAY)} open {name}\n")
            self.out.write(f'  hookledger-id: "{_quote(account_id)}"\n')
        self.out.write("\n")

    def transaction(self, day: int, text: str, meta: Mapping[str, str], legs: list[Leg]) -> None:
        self.out.write(f'{_day_text(day)} * "{_quote(_one_line(text))}"\n')
        for key, value in meta.items():
            self.out.write(f'  {key}: "{_quote(value)}"\n')
        for account_id, currency, amount in legs:
            self.out.write(f"  {self.names.account(account_id)}  {self.amount(amount, currency)}\n")
        self.out.write("\n")

    def assertions(self, day: int, balances: list[tuple[Key, Decimal]]) -> None:
        # A beancount balance holds at the start of its date: the next day's start is this
        # day's end.
        for (account_id, currency), balance in balances:
            name = self.names.account(account_id)
            self.out.write(
                f"{_day_text(day + 1)} balance {name}  {self.amount(balance, currency)}\n"
            )
        self.out.write("\n")


class _Hledger(_Syntax):
    def opens(self, first_use: Mapping[str, int]) -> None:
        self.out.write("decimal-mark .\n\n")
        for account_id in sorted(first_use):
            name = self.names.account(account_id)
            self.out.write(f"account {name}  ; hookledger-id:{_one_line(account_id)}\n")
        self.out.write("\n")

    def amount(self, value: Decimal, currency: str) -> str:
        name = self.names.commodity(currency)
        # hledger needs a commodity symbol with anything but letters in double quotes.
        symbol = name if name.isalpha() else f'"{name}"'
        return f"{canonical(value)} {symbol}"

    def transaction(self, day: int, text: str, meta: Mapping[str, str], legs: list[Leg]) -> None:
        # ";" would start a comment in an hledger description.
        self.out.write(f"{_day_text(day)} * {_one_line(text).replace(';', ',')}\n")
        for key, value in meta.items():
            self.out.write(f"    ; {key}:{_one_line(value).replace(',', ' ')}\n")
        for account_id, currency, amount in legs:
            name = self.names.account(account_id)
            self.out.write(f"    {name}  {self.amount(amount, currency)}\n")
        self.out.write("\n")

    def assertions(self, day: int, balances: list[tuple[Key, Decimal]]) -> None:
        self.out.write(f"{_day_text(day)} * balances at the end of {_day_text(day)}\n")
        for (account_id, currency), balance in balances:
            name = self.names.account(account_id)
            zero = self.amount(Decimal(0), currency)
            self.out.write(f"    {name}  {zero} = {self.amount(balance, currency)}\n")
        self.out.write("\n")


Leg = tuple[str, str, Decimal]  # (account id, currency, amount)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def write_journal(
    out: TextIO,
    fmt: str,
    entries: Iterable[tuple[JournalEntry, list[LedgerPosting]]],
    *,
    first_use: Mapping[str, int],
    opening: Mapping[Key, Decimal],
    opening_date: int | None,
) -> dict[Key, Decimal]:
    """Write ``entries`` (in ``(date, id)`` order) as a ``fmt`` journal to ``out``: account
    declarations (``first_use``: account id -> earliest date), then, when ``opening`` has a
    non-zero balance, one opening transaction dated ``opening_date``, then each entry, with
    end-of-day balance assertions. Returns the final balance per (account, currency).

    Raises ``JournalError`` when two ids would share a name; ``ValueError`` for an unknown
    format."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown journal format {fmt!r}; expected one of {FORMATS}")
    names = _Names()
    syntax: _Beancount | _Hledger = (_Beancount if fmt == "beancount" else _Hledger)(out, names)
    syntax.opens(first_use)
    balances: dict[Key, Decimal] = {}
    touched: set[Key] = set()
    today: int | None = None

    def book(day: int, text: str, meta: Mapping[str, str], legs: list[Leg]) -> None:
        nonlocal today
        if today is not None and day != today:
            syntax.assertions(today, [(k, balances[k]) for k in sorted(touched)])
            touched.clear()
        today = day
        with exact():
            for account_id, currency, amount in legs:
                key = (account_id, currency)
                balances[key] = balances.get(key, Decimal(0)) + amount
                touched.add(key)
        syntax.transaction(day, text, meta, legs)

    legs = [(a, c, v) for (a, c), v in sorted(opening.items()) if v != 0]
    if legs and opening_date is not None:
        day = opening_date // _DAY
        book(day, f"opening balances: entries before {_day_text(day)}", {}, legs)
    for entry, postings in entries:
        meta = {"event-id": entry.event_id, "entry-id": str(entry.id)}
        book(
            entry.date // _DAY,
            entry.description,
            meta,
            [(p.account_id, p.currency, p.amount) for p in postings],
        )
    if today is not None:
        syntax.assertions(today, [(k, balances[k]) for k in sorted(touched)])
    return balances
