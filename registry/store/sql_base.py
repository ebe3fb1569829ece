"""The base of every SQL module of the store: one open connection, how a resource row becomes a :class:`Stored`, and
the bulk-write and upsert statements that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    String,
    and_,
    any_,
    bindparam,
    column,
    func,
    insert,
    not_,
    or_,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY

from registry.store.query import (
    DateValue,
)
from registry.store.records import (
    R,
    Stored,
    utc,
)


@cache
def _pg_type_id_pairs() -> Any:
    """``SELECT t, i FROM unnest(:key_types, :key_ids)``: (type, id) pairs as two array parameters."""
    pairs = func.unnest(bindparam("key_types", type_=ARRAY(String)), bindparam("key_ids", type_=ARRAY(String)))
    w = pairs.table_valued(column("t", String), column("i", String)).render_derived(name="k")
    return select(w.c.t, w.c.i)


class SqlBase:
    """SQL on one open connection/transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"

    # The key lists of the write path (a Bundle's resources, their results) have a new length each time. Written as
    # ``IN (…)`` that is a new statement text per length, which SQLAlchemy expands and the driver parses anew on every
    # call (milliseconds for a few hundred keys); on PostgreSQL they go as array parameters instead: one text, parsed
    # once per process.
    def _type_id_in(self, pairs: Sequence[tuple[str, str]]) -> tuple[ColumnElement[bool], dict[str, Any]]:
        """``resource.(type, id)`` among ``pairs``, and the parameters to execute the statement with."""
        if not self.postgres:
            return tuple_(R.c.type, R.c.id).in_(list(pairs)), {}
        cond = tuple_(R.c.type, R.c.id).in_(_pg_type_id_pairs())
        return cond, {"key_types": [p[0] for p in pairs], "key_ids": [p[1] for p in pairs]}

    def _pks_in(self, col: Any, pks: Sequence[int]) -> tuple[ColumnElement[bool], dict[str, Any]]:
        """``col`` among the keys ``pks`` (one array parameter on PostgreSQL)."""
        if not self.postgres:
            return cast(ColumnElement[bool], col.in_(list(pks))), {}
        return col == any_(bindparam("key_pks", type_=ARRAY(BigInteger))), {"key_pks": list(pks)}

    def _values_in(self, col: Any, values: Sequence[str]) -> tuple[ColumnElement[bool], dict[str, Any]]:
        """``col`` among the strings ``values`` (one array parameter on PostgreSQL)."""
        if not self.postgres:
            return cast(ColumnElement[bool], col.in_(list(values))), {}
        return col == any_(bindparam("key_values", type_=ARRAY(String))), {"key_values": list(values)}

    def _stored(self, row: Any) -> Stored:
        return Stored(
            row.pk,
            row.type,
            row.id,
            row.version,
            utc(row.last_updated),
            row.deleted,
            row.patient_key,
            row.org_id,
            row.content_hash,
            bytes(row.body),
        )

    _COLS = (
        R.c.pk,
        R.c.type,
        R.c.id,
        R.c.version,
        R.c.last_updated,
        R.c.deleted,
        R.c.patient_key,
        R.c.org_id,
        R.c.content_hash,
        R.c.body,
    )

    def _bulk_insert(self, table: Any, rows: list[dict[str, Any]], *, always_copy: bool = False) -> None:
        """Many rows at once: COPY on PostgreSQL (no SQL to parse, one round trip), executemany on SQLite.
        ``always_copy``: COPY whatever the number of rows (values given as COPY's text, such as JSON for JSONB)."""
        if not rows:
            return
        if not self.postgres or (len(rows) < 20 and not always_copy):  # COPY pays off for many rows
            self.conn.execute(insert(table), rows)
            return
        columns = list(rows[0])
        raw = self.conn.connection.driver_connection
        if raw is None:
            raise RuntimeError("no driver connection for COPY")
        names = ", ".join(f'"{c}"' for c in columns)
        with raw.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])

    def _insert_ignore(self, table: Any) -> Any:
        if self.postgres:
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table).on_conflict_do_nothing()
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing()

    def _upsert(self, table: Any, keys: list[str]) -> Any:
        if self.postgres:
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            ins: Any = pg_insert(table)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            ins = sqlite_insert(table)
        return ins.on_conflict_do_update(
            index_elements=keys,
            set_={"count": table.c.count + ins.excluded.count, "last_seen": ins.excluded.last_seen,
                  "display": func.coalesce(ins.excluded.display, table.c.display)},
        )  # fmt: skip

    @staticmethod
    def _date_match(low: Any, high: Any, v: DateValue) -> ColumnElement[bool]:
        """FHIR R4 date search: the target range [low, high] against the parameter range [v.low, v.high]."""
        contained = and_(low >= v.low, high <= v.high)
        match v.prefix:
            case "eq":
                return contained
            case "ne":
                return not_(contained)
            case "gt":
                return cast(ColumnElement[bool], high > v.high)
            case "lt":
                return cast(ColumnElement[bool], low < v.low)
            case "ge":
                return or_(high > v.high, contained)
            case "le":
                return or_(low < v.low, contained)
            case "sa":
                return cast(ColumnElement[bool], low > v.high)
            case "eb":
                return cast(ColumnElement[bool], high < v.low)
            case "ap":
                return and_(high >= v.low, low <= v.high)
        raise ValueError(f"unknown date prefix {v.prefix}")
