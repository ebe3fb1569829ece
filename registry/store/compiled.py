"""Statements of the order check's hot path, run with as little in between as the driver allows.

A SQLAlchemy Core statement costs about 250 µs of CPU per execution on top of the driver's own work (building the
expression, its cache key, parameter processing, the result's metadata) — more than the index lookup itself, and the
order check runs half a dozen of them. ``Compiled`` keeps one statement, built once per dialect from the same Core
expression the rest of the store uses, and on PostgreSQL runs its compiled text through psycopg's cursor on the
transaction's own connection (server-side prepared after a few runs); on SQLite it runs through SQLAlchemy as
everything else. Only statements whose columns need no SQLAlchemy type processing on PostgreSQL (text, integers,
booleans, timestamps with time zone) belong here.

``insert_rows`` writes rows of several tables in one round trip on PostgreSQL (psycopg's pipeline mode), one
multi-row INSERT per table on SQLite.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any, cast

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import ColumnElement, Connection, String, any_, bindparam, insert
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement, Executable

POSTGRES = "postgresql"


class Compiled:
    """One statement: ``build(dialect_name)`` returns the Core expression (it may differ by dialect, e.g. ``= ANY``
    of an array on PostgreSQL where SQLite takes an expanding ``IN``); its parameters are bound by name."""

    def __init__(self, build: Callable[[str], Executable]) -> None:
        self.build = build
        self._built: dict[str, Executable] = {}
        self._text: str | None = None
        self._defaults: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _statement(self, dialect: str) -> Executable:
        found = self._built.get(dialect)
        if found is None:
            with self._lock:
                found = self._built.setdefault(dialect, self.build(dialect))
        return found

    def _pg_text(self, conn: Connection) -> str:
        if self._text is None:
            compiled = cast(ClauseElement, self._statement(POSTGRES)).compile(dialect=conn.dialect)
            self._defaults = dict(compiled.params)  # the expression's own literals, bound as parameters
            self._text = str(compiled)
        return self._text

    def all(self, conn: Connection, params: Mapping[str, Any]) -> Sequence[Any]:
        """Every row, each with its columns as attributes."""
        if conn.dialect.name != POSTGRES:
            return conn.execute(self._statement(conn.dialect.name), dict(params)).all()
        text = self._pg_text(conn)
        bound = {**self._defaults, **params}
        with _driver_errors(conn, text, bound), _driver(conn).cursor(row_factory=namedtuple_row) as cur:
            cur.execute(text, bound)
            rows: list[Any] = cur.fetchall()
            return rows

    def first(self, conn: Connection, params: Mapping[str, Any]) -> Any | None:
        rows = self.all(conn, params)
        return rows[0] if rows else None


def all_together(conn: Connection, queries: Sequence[tuple[Compiled, Mapping[str, Any]]]) -> list[Sequence[Any]]:
    """Every row of each statement (plain reads: no locks), in order. On PostgreSQL they go to the server in one round
    trip (psycopg's pipeline mode), as the server's implicit transaction when the caller's has sent nothing yet
    (:func:`_before_the_transaction`); elsewhere they run one by one."""
    if conn.dialect.name != POSTGRES:
        return [q.all(conn, params) for q, params in queries]
    raw = _driver(conn)
    texts = [(q._pg_text(conn), {**q._defaults, **params}) for q, params in queries]
    with _driver_errors(conn, texts[0][0] if texts else "", {}), _before_the_transaction(raw):
        with raw.pipeline():
            cursors = []
            for text, bound in texts:
                cur = raw.cursor(row_factory=namedtuple_row)
                cur.execute(text, bound)
                cursors.append(cur)
        out: list[Sequence[Any]] = []
        for cur in cursors:
            out.append(cur.fetchall())
            cur.close()
        return out


@contextmanager
def _before_the_transaction(raw: Any) -> Iterator[None]:
    """Statements sent before the caller's transaction has sent any (psycopg has not begun it yet) run without BEGIN
    and COMMIT: PostgreSQL's extended protocol runs everything up to a Sync as one implicit transaction, committed at
    the Sync or rolled back whole (PostgreSQL: Protocol, Pipelining). Plain reads see what they would have seen in the
    caller's READ COMMITTED transaction; writes sent this way must be the transaction's last (``insert_rows``'s
    ``closing``). Inside a begun transaction this does nothing."""
    if raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        yield
        return
    raw.autocommit = True
    try:
        yield
    finally:
        if not raw.closed:  # a connection lost meanwhile is invalidated by _driver_errors: never pooled again
            raw.autocommit = False


def one_of(column: Any, name: str, dialect: str) -> ColumnElement[bool]:
    """``column`` is one of the list bound as ``name``: ``= ANY`` of an array on PostgreSQL (one statement text
    whatever the list's length), an expanding ``IN`` elsewhere."""
    if dialect == POSTGRES:
        return column == any_(bindparam(name, type_=ARRAY(String)))  # type: ignore[no-any-return]
    return column.in_(bindparam(name, expanding=True))  # type: ignore[no-any-return]


_ROWS_AT_ONCE = 256  # rows in one INSERT at most (PostgreSQL takes at most 65,535 parameters a statement)


def insert_rows(
    conn: Connection, batches: Sequence[tuple[Any, Sequence[Mapping[str, Any]]]], *, closing: bool = False
) -> None:
    """``(table, rows)`` pairs written in the caller's transaction: every row of a table has the same keys.

    ``closing``: the caller's transaction writes nothing after these. On PostgreSQL the rows go in one round trip
    (psycopg's pipeline mode); with ``closing``, and the transaction having sent nothing before, that round trip is
    the whole transaction — the rows commit together or not at all, without BEGIN and COMMIT of their own."""
    batches = [(t, rows) for t, rows in batches if rows]
    if not batches:
        return
    if conn.dialect.name != POSTGRES:
        for table, rows in batches:
            conn.execute(insert(table), [dict(r) for r in rows])
        return
    raw = _driver(conn)
    outside = _before_the_transaction(raw) if closing else nullcontext()
    with _driver_errors(conn, "INSERT (check log)", {}), outside, raw.pipeline(), raw.cursor() as cur:
        for table, rows in batches:  # multi-row INSERTs, of a power of two rows each (see _row_counts)
            columns = list(rows[0])
            names = ", ".join(f'"{c}"' for c in columns)
            one = "(" + ", ".join(["%s"] * len(columns)) + ")"
            start = 0
            for count in _row_counts(len(rows)):
                chunk = rows[start : start + count]
                start += count
                values = [r[c] for r in chunk for c in columns]
                cur.execute(f'INSERT INTO "{table.name}" ({names}) VALUES {", ".join([one] * count)}', values)  # noqa: S608 - names from the metadata


def _row_counts(n: int) -> list[int]:
    """``n`` rows as INSERTs of a power of two rows each, at most ``_ROWS_AT_ONCE`` (5 → 4 + 1): a handful of
    statement texts a table, so the driver's cache of prepared statements (which the hot reads rely on) is not
    flooded with one text per row count."""
    out = [_ROWS_AT_ONCE] * (n // _ROWS_AT_ONCE)
    rest = n % _ROWS_AT_ONCE
    out += [1 << bit for bit in range(rest.bit_length() - 1, -1, -1) if rest >> bit & 1]
    return out


@contextmanager
def _driver_errors(conn: Connection, statement: str, params: Mapping[str, Any]) -> Iterator[None]:
    """The driver's errors as SQLAlchemy raises them (IntegrityError, OperationalError, …: what the registry's
    handlers answer 409 or 503 for), parameters hidden; a connection the server dropped is invalidated, so the pool
    does not hand it out again."""
    try:
        yield
    except psycopg.Error as exc:
        gone = conn.dialect.is_disconnect(cast(Any, exc), _driver(conn), None)
        if gone:
            conn.invalidate(exc)
        raise DBAPIError.instance(
            statement, dict(params), exc, psycopg.Error, hide_parameters=True, connection_invalidated=gone,
            dialect=conn.dialect,
        ) from exc  # fmt: skip


def _driver(conn: Connection) -> Any:
    raw = conn.connection.driver_connection
    if raw is None:
        raise RuntimeError("no driver connection")
    return raw
