"""SQL engines, the exact decimal column type, and dialect-neutral insert-or-ignore.

SQLite (the default) runs in WAL mode with a busy timeout, and every transaction starts with
``BEGIN IMMEDIATE`` so concurrent writers serialise instead of failing on a stale snapshot.
PostgreSQL relies on row locks (``SELECT ... FOR UPDATE``) taken by the worker.
"""

from __future__ import annotations

import re
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import Connection, Engine, String, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.url import make_url
from sqlalchemy.types import Numeric, TypeDecorator, TypeEngine

from app.domain.money import canonical


class ExactDecimal(TypeDecorator[Decimal]):
    """NUMERIC(38, 18) on PostgreSQL; canonical decimal text on SQLite (whose NUMERIC is a float).

    Binding anything but a ``Decimal`` is a ``TypeError``: a float never reaches the ledger."""

    impl = Numeric(38, 18)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(48))
        return dialect.type_descriptor(Numeric(38, 18, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"amounts must be Decimal, got {type(value).__name__}")
        return canonical(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(canonical(Decimal(value)))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # let the 'begin' hook below issue BEGIN itself
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=10000")
    # Switching a new database to WAL needs an exclusive lock, and SQLite may answer "locked"
    # at once instead of waiting when several processes open it together (seen once in the
    # schema-race test): try again for a while.
    for attempt in range(100):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.05)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    # Writers take the write lock up front; readers (read_only engines) do not, so a long
    # export or verify never holds up receipts (WAL lets them read alongside the writer).
    read_only = conn.get_execution_options().get("hookledger_read_only", False)
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def read_only(engine: Engine) -> Engine:
    """The same engine and pool, for sessions that only read."""
    return engine.execution_options(hookledger_read_only=True)


def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain ``postgresql://`` URLs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, *, pool_size: int = 5, pre_ping: bool = True) -> Engine:
    """Create an engine for ``url``; creates ``./var`` for a relative SQLite path.

    ``pre_ping`` (PostgreSQL) tests each connection as it leaves the pool, one round trip, so a
    connection the server dropped (a restart) is replaced instead of failing its first
    statement. A hot path that retries a dropped connection itself turns it off."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 10, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
        connect_args={"connect_timeout": 5},
    )


def insert_ignore(
    dialect_name: str, table: Any, values: dict[str, Any], conflict: list[str]
) -> Any:
    """Return an ``INSERT ... ON CONFLICT (conflict) DO NOTHING`` for SQLite or PostgreSQL."""
    return insert_ignore_many(dialect_name, table, conflict).values(**values)


def insert_ignore_many(dialect_name: str, table: Any, conflict: list[str]) -> Any:
    """The same statement without values, to execute with a list of rows: one executemany
    (pipelined on PostgreSQL), the same SQL whatever the count, so nothing is compiled again."""
    insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing(index_elements=conflict)


@dataclass(frozen=True)
class BulkInsert:
    """A multi-row insert compiled once per (dialect, table, columns) by SQLAlchemy and run as
    driver SQL in the session's transaction; for the hot paths (receipts, journal entries,
    postings).

    PostgreSQL: one ``INSERT ... SELECT * FROM unnest(one array per column)``, a single
    statement whatever the row count. Pipelined single-row inserts (SQLAlchemy's executemany)
    cost the server about four times the CPU per row, and SQLAlchemy's parameter handling
    about twice the driver's; the arrays go in PostgreSQL's binary format. SQLite: one
    executemany of the single-row statement. Either way the ORM's bind processors run, so
    values are stored exactly as the ORM writes and reads them (and ``ExactDecimal`` still
    refuses anything but a ``Decimal``)."""

    sql: str
    columns: tuple[str, ...]
    processors: tuple[tuple[int, Any], ...]
    unnest: bool
    returning: bool
    sql_one: str  # PostgreSQL: the same insert of one row (VALUES), for a batch of one

    _cache: ClassVar[dict[tuple[Any, ...], BulkInsert]] = {}

    @classmethod
    def of(
        cls,
        dialect: Dialect,
        table: Any,
        columns: tuple[str, ...],
        *,
        conflict: tuple[str, ...] = (),
        returning: str | None = None,
    ) -> BulkInsert:
        """The insert of ``columns`` into ``table``; with ``conflict``, rows whose key exists
        are skipped; ``returning`` names a column PostgreSQL returns for the rows stored."""
        key = (dialect.name, table.name, columns, conflict, returning)
        bulk = cls._cache.get(key)
        if bulk is None:
            bulk = cls._cache[key] = cls._compile(dialect, table, columns, conflict, returning)
        return bulk

    @classmethod
    def _compile(
        cls,
        dialect: Dialect,
        table: Any,
        columns: tuple[str, ...],
        conflict: tuple[str, ...],
        returning: str | None,
    ) -> BulkInsert:
        if conflict:
            stmt = insert_ignore_many(dialect.name, table, list(conflict))
        else:
            stmt = table.insert()
        compiled = stmt.compile(dialect=dialect, column_keys=list(columns))
        processors = compiled._bind_processors  # the ORM's own converters
        unnest = dialect.name == "postgresql"
        if unnest:
            order = columns
            # Arrays of the bare types (VARCHAR, not VARCHAR(40): an explicit cast to a length
            # truncates); the insert's assignment cast then enforces lengths and scales.
            # Sent in binary (%b): psycopg's text array dumper escapes every element in Python
            # with a regular expression, about 2.5 times the client CPU per row (bench.ingest).
            mark = "%b" if dialect.driver == "psycopg" else "%s"  # psycopg2 has no %b
            arrays = ", ".join(f"{mark}::{_bare_type(table.c[name], dialect)}[]" for name in order)
            # Table, column names and types come from the model; every value is bound.
            names = ", ".join(order)
            sql = f"INSERT INTO {table.name} ({names}) SELECT * FROM unnest({arrays})"  # noqa: S608
            # One row (a receipt at a quiet moment): binding a one-element array per column
            # costs the client about 100 us more than binding the values (21 columns).
            values = ", ".join(["%s"] * len(order))
            sql_one = f"INSERT INTO {table.name} ({names}) VALUES ({values})"  # noqa: S608
            tail = ""
            if conflict:
                tail += f" ON CONFLICT ({', '.join(conflict)}) DO NOTHING"
            if returning:
                tail += f" RETURNING {returning}"
            sql, sql_one = sql + tail, sql_one + tail
        else:
            order = tuple(compiled.positiontup or ())
            sql = sql_one = str(compiled)
        if set(order) != set(columns):  # pragma: no cover - a model change would show here
            raise RuntimeError(f"{table.name}: the insert does not bind every column given")
        return cls(
            sql=sql,
            columns=order,
            processors=tuple((i, processors[n]) for i, n in enumerate(order) if n in processors),
            unnest=unnest,
            returning=bool(returning) and unnest,
            sql_one=sql_one,
        )

    def _params(self, row: dict[str, Any]) -> list[Any]:
        values = [row[name] for name in self.columns]
        for i, process in self.processors:
            if values[i] is not None:
                values[i] = process(values[i])
        return values

    def execute(self, session: Any, rows: list[dict[str, Any]]) -> list[Any] | None:
        """Insert ``rows`` (dicts with exactly the compiled columns) in the session's
        transaction. Returns the ``returning`` column's rows on PostgreSQL, else ``None``."""
        if not rows:
            return [] if self.returning else None
        connection = session.connection()
        if not self.unnest:
            # exec_driver_sql: no compiling, and the driver's errors arrive as SQLAlchemy's.
            connection.exec_driver_sql(self.sql, [tuple(self._params(row)) for row in rows])
            return None
        if len(rows) == 1:
            sql, params = self.sql_one, tuple(self._params(rows[0]))
        else:
            arrays = zip(*(self._params(row) for row in rows), strict=True)
            sql, params = self.sql, tuple(list(col) for col in arrays)
        return run_driver_sql(connection, sql, params, fetch=self.returning)


def run_driver_sql(
    connection: Connection, sql: str, params: tuple[Any, ...], *, fetch: bool
) -> list[Any] | None:
    """Run one statement on the driver connection under ``connection``, in its transaction,
    and return its rows if ``fetch``. ``exec_driver_sql`` costs about 120 us of CPU a call in
    execution context and result objects, as much as a round trip on loopback; this skips
    them. Failures go through the same handler ``exec_driver_sql`` uses
    (``Connection._handle_dbapi_exception``): the driver's errors arrive as SQLAlchemy's
    (``OperationalError``, ``IntegrityError``...), and a disconnect invalidates the whole pool,
    so the receipts' one retry gets a new connection even from a pool that does not ping
    (``tests/integration/test_bulk_insert.py``). Engine events around cursor execution
    (``before_cursor_execute``, ``echo``) do not see these statements; nothing here uses them."""
    try:
        with connection.connection.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
            cursor.execute(sql, params)
            return list(cursor.fetchall()) if fetch else None
    except BaseException as exc:  # noqa: BLE001 - re-raised by the handler, as SQLAlchemy does
        connection._handle_dbapi_exception(exc, sql, params, None, None)


def _bare_type(column: Any, dialect: Dialect) -> str:
    """The column's SQL type without length, precision or scale: ``VARCHAR(40)`` -> ``VARCHAR``."""
    return re.sub(r"\([^)]*\)", "", column.type.compile(dialect=dialect)).strip()


def utcnow() -> datetime:
    """Aware UTC: every timestamp column stores UTC."""
    return datetime.now(UTC)


def as_utc(when: datetime) -> datetime:
    """``when`` as an aware datetime: a naive one (as SQLite may hand back) is UTC."""
    return when if when.tzinfo else when.replace(tzinfo=UTC)
