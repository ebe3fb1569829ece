"""The resource repository: every SQL statement about FHIR resources lives here (DESIGN.md §2: route handlers hold no
queries). Services open a :class:`UnitOfWork`, call the repository inside it, and the unit commits whole or not at
all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, cast

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    String,
    and_,
    bindparam,
    column,
    delete,
    exists,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from registry.fhir.extract import IndexValues
from registry.store.tables import metadata

R = cast(Any, metadata.tables["resource"])
V = cast(Any, metadata.tables["resource_version"])
TOK = cast(Any, metadata.tables["sp_token"])
STR = cast(Any, metadata.tables["sp_string"])
DAT = cast(Any, metadata.tables["sp_date"])
REF = cast(Any, metadata.tables["sp_reference"])
IDN = cast(Any, metadata.tables["resource_identifier"])
AUD = cast(Any, metadata.tables["audit_event"])
RIX = cast(Any, metadata.tables["result_index"])
CMAP = cast(Any, metadata.tables["code_map"])
UNM = cast(Any, metadata.tables["unmapped_code"])

MAX_INDEX_TEXT = 255


class DuplicateIdentifierError(Exception):
    """Another live resource of the type already holds this business identifier (a lost race, or a re-push)."""


@dataclass(frozen=True, slots=True)
class Stored:
    pk: int
    type: str
    id: str
    version: int
    last_updated: datetime
    deleted: bool
    patient_key: str | None
    org_id: str | None
    content_hash: str
    body: bytes


@dataclass(frozen=True, slots=True)
class StoredVersion:
    type: str
    id: str
    version: int
    last_updated: datetime
    method: str
    deleted: bool
    body: bytes | None


@dataclass(slots=True)
class WritePlan:
    creates: list[NewContent] = field(default_factory=list)
    replaces: list[tuple[Stored, NewContent]] = field(default_factory=list)
    deletes: list[Stored] = field(default_factory=list)


@dataclass(slots=True)
class NewContent:
    """Everything a write stores besides the server-assigned version."""

    type: str
    id: str
    body: bytes
    content_hash: str
    patient_key: str | None
    org_id: str | None
    index: IndexValues
    identifiers: set[tuple[str, str]] = field(default_factory=set)


# ---------------------------------------------------------------------------- search clauses
@dataclass(frozen=True, slots=True)
class TokenValue:
    system: str | None  # None: any system
    code: str | None  # None: any code (``system|``)


@dataclass(frozen=True, slots=True)
class TokenClause:
    param: str
    values: tuple[TokenValue, ...]
    negate: bool = False


@dataclass(frozen=True, slots=True)
class StringClause:
    param: str
    values: tuple[str, ...]  # already normalized for prefix/contains; as given for exact
    mode: str = "prefix"  # prefix | exact | contains


@dataclass(frozen=True, slots=True)
class DateValue:
    prefix: str
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class DateClause:
    param: str
    values: tuple[DateValue, ...]


@dataclass(frozen=True, slots=True)
class ReferenceClause:
    param: str
    values: tuple[tuple[str | None, str], ...]  # (target type or None, id)


@dataclass(frozen=True, slots=True)
class ChainClause:
    """``param.target_param=value``: references whose target (of ``target_type``) matches ``inner``."""

    param: str
    target_type: str
    inner: TokenClause | StringClause | DateClause | ReferenceClause


@dataclass(frozen=True, slots=True)
class MissingClause:
    param: str
    kind: str  # token | string | date | reference
    missing: bool


@dataclass(frozen=True, slots=True)
class IdClause:
    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LastUpdatedClause:
    values: tuple[DateValue, ...]


@dataclass(frozen=True, slots=True)
class PatientKeyClause:
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CareContextClause:
    """Only patients who have a local identity (a Patient) at this organization (DESIGN.md §6)."""

    org_id: str


Clause = (
    TokenClause
    | StringClause
    | DateClause
    | ReferenceClause
    | ChainClause
    | MissingClause
    | IdClause
    | LastUpdatedClause
    | PatientKeyClause
    | CareContextClause
)


@dataclass(frozen=True, slots=True)
class SortKey:
    param: str  # _id | _lastUpdated | a date parameter
    descending: bool


@dataclass(frozen=True, slots=True)
class Query:
    type: str
    clauses: tuple[Clause, ...] = ()
    sort: tuple[SortKey, ...] = ()
    count: int = 50
    cursor: tuple[Any, ...] | None = None  # sort values then pk of the last row of the previous page
    snapshot: int | None = None  # highest resource pk visible to this paging session


def encode_cursor(values: Sequence[Any], snapshot: int, key: bytes, scope: str) -> str:
    payload = base64.urlsafe_b64encode(orjson.dumps({"v": list(values), "s": snapshot})).decode().rstrip("=")
    mac = hmac.new(key, f"{scope}|{payload}".encode(), hashlib.sha256).digest()[:16]
    return payload + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def decode_cursor(token: str, key: bytes, scope: str) -> tuple[tuple[Any, ...], int]:
    """The sort values and snapshot of a cursor this server made for this search; ValueError otherwise."""
    payload, sep, mac_text = token.partition(".")
    expected = hmac.new(key, f"{scope}|{payload}".encode(), hashlib.sha256).digest()[:16]
    try:
        mac = base64.urlsafe_b64decode(mac_text + "=" * (-len(mac_text) % 4))
        data = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        values, snapshot = tuple(data["v"]), int(data["s"])
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise ValueError("not a paging cursor of this server") from None
    if not sep or not hmac.compare_digest(mac, expected):
        raise ValueError("not a paging cursor of this server, or not for this search")
    if not values or not isinstance(values[-1], int):
        raise ValueError("not a paging cursor of this server")
    return values, snapshot


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored in UTC); PostgreSQL aware ones."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _clip(text: str) -> str:
    return text[:MAX_INDEX_TEXT]


@cache
def _pg_by_identifiers() -> Select[Any]:
    """``SELECT … FROM unnest(:wt, :ws, :wv) AS w(t, s, v) JOIN identifier JOIN resource`` (PostgreSQL)."""
    w = (
        func.unnest(
            bindparam("wt", type_=ARRAY(String)),
            bindparam("ws", type_=ARRAY(String)),
            bindparam("wv", type_=ARRAY(String)),
        )
        .table_valued(column("t", String), column("s", String), column("v", String))
        .render_derived(name="w")
    )
    on = and_(IDN.c.type == w.c.t, IDN.c.system == w.c.s, IDN.c.value == w.c.v)
    return select(
        IDN.c.type.label("i_type"), IDN.c.system.label("i_system"), IDN.c.value.label("i_value"), *Repository._COLS
    ).select_from(w.join(IDN, on).join(R, IDN.c.res_pk == R.c.pk))


class Repository:
    """SQL for one open connection/transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"

    # ------------------------------------------------------------------ reads
    def _stored(self, row: Any) -> Stored:
        return Stored(
            row.pk,
            row.type,
            row.id,
            row.version,
            _utc(row.last_updated),
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

    def get(self, rtype: str, rid: str, *, for_update: bool = False) -> Stored | None:
        stmt = select(*self._COLS).where(R.c.type == rtype, R.c.id == rid)
        if for_update and self.postgres:
            stmt = stmt.with_for_update()
        row = self.conn.execute(stmt).first()
        return self._stored(row) if row is not None else None

    def get_many(self, refs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Stored]:
        wanted = list(dict.fromkeys(refs))
        out: dict[tuple[str, str], Stored] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            rows = self.conn.execute(
                select(*self._COLS).where(tuple_(R.c.type, R.c.id).in_(chunk), R.c.deleted.is_(False))
            )
            for row in rows:
                out[(row.type, row.id)] = self._stored(row)
        return out

    def live_patient_keys(self, refs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
        """(type, id) → patient_key of each live resource among ``refs``; missing ones are absent."""
        wanted = list(dict.fromkeys(refs))
        if not wanted:
            return {}
        rows = self.conn.execute(
            select(R.c.type, R.c.id, R.c.patient_key, R.c.org_id).where(
                tuple_(R.c.type, R.c.id).in_(wanted), R.c.deleted.is_(False)
            )
        )
        return {(r.type, r.id): r.patient_key for r in rows}

    def org_of(self, refs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
        wanted = list(dict.fromkeys(refs))
        if not wanted:
            return {}
        rows = self.conn.execute(
            select(R.c.type, R.c.id, R.c.org_id).where(tuple_(R.c.type, R.c.id).in_(wanted), R.c.deleted.is_(False))
        )
        return {(r.type, r.id): r.org_id for r in rows}

    @staticmethod
    def _version(r: Any) -> StoredVersion:
        body = bytes(r.body) if r.body is not None else None
        return StoredVersion(r.type, r.id, r.version, _utc(r.last_updated), r.method, r.deleted, body)

    def _with_current_body(self, versions: list[StoredVersion]) -> list[StoredVersion]:
        """The current version's body lives in ``resource``; fill it in for history and vread."""
        if not any(v.body is None and not v.deleted for v in versions):
            return versions
        current = self.get(versions[0].type, versions[0].id)
        out = []
        for v in versions:
            if v.body is None and not v.deleted and current is not None and current.version == v.version:
                v = StoredVersion(v.type, v.id, v.version, v.last_updated, v.method, v.deleted, current.body)
            out.append(v)
        return out

    def version(self, rtype: str, rid: str, version: int) -> StoredVersion | None:
        row = self.conn.execute(select(V).where(V.c.type == rtype, V.c.id == rid, V.c.version == version)).first()
        return self._with_current_body([self._version(row)])[0] if row else None

    def history(self, rtype: str, rid: str, *, count: int, below: int | None = None) -> list[StoredVersion]:
        stmt = select(V).where(V.c.type == rtype, V.c.id == rid)
        if below is not None:
            stmt = stmt.where(V.c.version < below)
        rows = self.conn.execute(stmt.order_by(V.c.version.desc()).limit(count))
        return self._with_current_body([self._version(r) for r in rows])

    def history_total(self, rtype: str, rid: str) -> int:
        return int(self.conn.execute(select(func.count()).where(V.c.type == rtype, V.c.id == rid)).scalar_one())

    def by_identifier(self, rtype: str, system: str, value: str) -> Stored | None:
        row = self.conn.execute(
            select(*self._COLS)
            .join(IDN, IDN.c.res_pk == R.c.pk)
            .where(IDN.c.type == rtype, IDN.c.system == system, IDN.c.value == value)
        ).first()
        return self._stored(row) if row is not None else None

    # ------------------------------------------------------------------ writes (batched per transaction)
    def get_for_write(self, refs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Stored]:
        """Current rows (deleted ones included) of ``refs``, locked on PostgreSQL until the transaction ends."""
        wanted = list(dict.fromkeys(refs))
        out: dict[tuple[str, str], Stored] = {}
        for i in range(0, len(wanted), 500):
            stmt = select(*self._COLS).where(tuple_(R.c.type, R.c.id).in_(wanted[i : i + 500]))
            if self.postgres:
                stmt = stmt.with_for_update()
            for row in self.conn.execute(stmt):
                out[(row.type, row.id)] = self._stored(row)
        return out

    def by_identifiers(self, keys: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], Stored]:
        """(type, system, value) → the live resource holding that business identifier."""
        wanted = sorted({(t, _clip(sy), _clip(v)) for t, sy, v in keys})
        out: dict[tuple[str, str, str], Stored] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            if self.postgres:
                # Joined to the keys unnested from three array parameters: one index lookup per key on
                # (type, system, value) whatever the planner believes about the table (with stale statistics
                # ``value IN (…)`` was filtered row by row), and one statement text for any number of keys, so
                # SQLAlchemy compiles it once (a VALUES list with the keys inlined cost ~20 ms of compiling per call).
                arrays = {"wt": [k[0] for k in chunk], "ws": [k[1] for k in chunk], "wv": [k[2] for k in chunk]}
                rows = self.conn.execute(_pg_by_identifiers(), arrays)
            else:
                rows = self.conn.execute(
                    select(IDN.c.type.label("i_type"), IDN.c.system.label("i_system"), IDN.c.value.label("i_value"),
                           *self._COLS)
                    .select_from(IDN.join(R, IDN.c.res_pk == R.c.pk))
                    .where(tuple_(IDN.c.type, IDN.c.system, IDN.c.value).in_(chunk))
                )  # fmt: skip
            for row in rows:
                out[(row.i_type, row.i_system, row.i_value)] = self._stored(row)
        return out

    def _insert_ignore(self, table: Any) -> Any:
        if self.postgres:
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table).on_conflict_do_nothing()
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing()

    def apply(self, plan: WritePlan, *, now: datetime, now_us: int) -> dict[tuple[str, str], Stored]:
        """Write a whole plan with a handful of statements: new resources, new versions of existing ones, deletions,
        their history rows, business identifiers and search values. Raises :class:`DuplicateIdentifierError` when a
        business identifier is already held (a concurrent writer won) — the caller's transaction must roll back."""
        written: dict[tuple[str, str], Stored] = {}
        pk_of: dict[tuple[str, str], int] = {}
        if plan.creates:
            rows = [
                {"type": c.type, "id": c.id, "version": 1, "last_updated": now, "last_updated_us": now_us,
                 "deleted": False, "patient_key": c.patient_key, "org_id": c.org_id, "content_hash": c.content_hash,
                 "body": c.body, "doc": self._doc(c)}
                for c in plan.creates
            ]  # fmt: skip
            result = self.conn.execute(insert(R).returning(R.c.pk, sort_by_parameter_order=True), rows)
            for c, pk in zip(plan.creates, result.scalars().all(), strict=True):
                pk_of[(c.type, c.id)] = pk
                written[(c.type, c.id)] = Stored(pk, c.type, c.id, 1, now, False, c.patient_key, c.org_id,
                                                 c.content_hash, c.body)  # fmt: skip
        touched = [existing.pk for existing, _c in plan.replaces] + [d.pk for d in plan.deletes]
        if touched:
            for table in (TOK, STR, DAT, REF):
                self.conn.execute(delete(table).where(table.c.res_pk.in_(touched)))
            self.conn.execute(delete(IDN).where(IDN.c.res_pk.in_(touched)))
        if plan.replaces:
            self.conn.execute(
                update(R).where(R.c.pk == bindparam("b_pk")).values(
                    version=bindparam("b_version"), last_updated=now, last_updated_us=now_us, deleted=False,
                    patient_key=bindparam("b_patient_key"), org_id=bindparam("b_org_id"),
                    content_hash=bindparam("b_hash"), body=bindparam("b_body"), doc=bindparam("b_doc"),
                ),
                [{"b_pk": e.pk, "b_version": e.version + 1, "b_patient_key": c.patient_key, "b_org_id": c.org_id,
                  "b_hash": c.content_hash, "b_body": c.body, "b_doc": self._doc(c)} for e, c in plan.replaces],
            )  # fmt: skip
            for e, c in plan.replaces:
                pk_of[(c.type, c.id)] = e.pk
                written[(c.type, c.id)] = Stored(e.pk, c.type, c.id, e.version + 1, now, False, c.patient_key,
                                                 c.org_id, c.content_hash, c.body)  # fmt: skip
        if plan.deletes:
            self.conn.execute(
                update(R)
                .where(R.c.pk == bindparam("b_pk"))
                .values(version=bindparam("b_version"), last_updated=now, last_updated_us=now_us, deleted=True),
                [{"b_pk": d.pk, "b_version": d.version + 1} for d in plan.deletes],
            )
            for d in plan.deletes:
                written[(d.type, d.id)] = Stored(d.pk, d.type, d.id, d.version + 1, now, True, d.patient_key,
                                                 d.org_id, d.content_hash, b"")  # fmt: skip
        contents = [*plan.creates, *(c for _e, c in plan.replaces)]
        identifiers = [
            {"type": c.type, "system": _clip(sy), "value": _clip(v), "res_pk": pk_of[(c.type, c.id)]}
            for c in contents
            for sy, v in sorted(c.identifiers)
        ]
        if identifiers:
            claimed = self.conn.execute(
                self._insert_ignore(IDN).returning(IDN.c.res_pk, sort_by_parameter_order=True), identifiers
            ).all()
            if len(claimed) != len(identifiers):
                raise DuplicateIdentifierError("a business identifier is already held by another resource")
        superseded = [*(e for e, _c in plan.replaces if not e.deleted), *plan.deletes]
        if superseded:  # the version being replaced keeps its body in the history from now on
            self.conn.execute(
                update(V)
                .where(V.c.type == bindparam("b_type"), V.c.id == bindparam("b_id"), V.c.version == bindparam("b_v"))
                .values(body=bindparam("b_body")),
                [{"b_type": e.type, "b_id": e.id, "b_v": e.version, "b_body": e.body} for e in superseded],
            )
        versions = [
            {"type": c.type, "id": c.id, "version": written[(c.type, c.id)].version, "last_updated": now,
             "method": "POST" if written[(c.type, c.id)].version == 1 else "PUT", "deleted": False, "body": None}
            for c in contents
        ] + [
            {"type": d.type, "id": d.id, "version": d.version + 1, "last_updated": now, "method": "DELETE",
             "deleted": True, "body": None}
            for d in plan.deletes
        ]  # fmt: skip
        self._bulk_insert(V, versions)
        self._index_many([(pk_of[(c.type, c.id)], c) for c in contents])
        return written

    def _bulk_insert(self, table: Any, rows: list[dict[str, Any]]) -> None:
        """Many rows at once: COPY on PostgreSQL (no SQL to parse, one round trip), executemany on SQLite."""
        if not rows:
            return
        if not self.postgres or len(rows) < 20:  # COPY pays off for many rows; a few go as one INSERT
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

    def _index_many(self, items: Sequence[tuple[int, NewContent]]) -> None:
        tokens: list[dict[str, Any]] = []
        strings: list[dict[str, Any]] = []
        dates: list[dict[str, Any]] = []
        refs: list[dict[str, Any]] = []
        for pk, c in items:
            t, idx = c.type, c.index
            for p, sy, code in {(p, _clip(sy), _clip(code)) for p, sy, code in idx.tokens}:
                tokens.append({"res_pk": pk, "param": p, "system": sy, "code": code, "type": t})
            seen: dict[tuple[str, str], str] = {}
            for p, norm, exact in idx.strings:
                seen.setdefault((p, _clip(norm)), _clip(exact))
            strings += [{"res_pk": pk, "param": p, "value": v, "exact": e, "type": t} for (p, v), e in seen.items()]
            dates += [{"res_pk": pk, "param": p, "low": lo, "high": hi, "type": t} for p, lo, hi in idx.dates]
            refs += [
                {"res_pk": pk, "param": p, "target_type": tt, "target_id": ti, "type": t}
                for p, tt, ti in idx.references
            ]
        for table, rows in ((TOK, tokens), (STR, strings), (DAT, dates), (REF, refs)):
            self._bulk_insert(table, rows)

    def _doc(self, content: NewContent) -> Any:
        # JSONB copy for ad-hoc SQL on PostgreSQL only; SQLite reads the body itself.
        return orjson.loads(content.body) if self.postgres else None

    # ------------------------------------------------------------------ search
    def _token_match(self, table: Any, v: TokenValue) -> ColumnElement[bool]:
        parts: list[ColumnElement[bool]] = []
        if v.code is not None:
            parts.append(table.c.code == _clip(v.code))
        if v.system is not None:
            parts.append(table.c.system == _clip(v.system))
        return and_(*parts) if parts else literal(True)

    def _clause(self, rtype: str, clause: Clause, res: Any = R) -> ColumnElement[bool]:
        """The SQL predicate for one clause over the resource table ``res`` (an alias for chained targets)."""
        pk = res.c.pk
        if isinstance(clause, TokenClause):
            sub = select(TOK.c.res_pk).where(
                TOK.c.type == rtype,
                TOK.c.param == clause.param,
                or_(*(self._token_match(TOK, v) for v in clause.values)),
            )
            return cast(ColumnElement[bool], pk.not_in(sub) if clause.negate else pk.in_(sub))
        if isinstance(clause, StringClause):
            if clause.mode == "exact":
                cond = STR.c.exact.in_([_clip(v) for v in clause.values])
            elif clause.mode == "contains":
                cond = or_(*(STR.c.value.contains(v, autoescape=True) for v in clause.values))
            else:
                cond = or_(*(STR.c.value.startswith(v, autoescape=True) for v in clause.values))
            return cast(
                ColumnElement[bool],
                pk.in_(select(STR.c.res_pk).where(STR.c.type == rtype, STR.c.param == clause.param, cond)),
            )
        if isinstance(clause, DateClause):
            return cast(
                ColumnElement[bool],
                pk.in_(
                    select(DAT.c.res_pk).where(
                        DAT.c.type == rtype,
                        DAT.c.param == clause.param,
                        or_(*(self._date_match(DAT.c.low, DAT.c.high, v) for v in clause.values)),
                    )
                ),
            )
        if isinstance(clause, ReferenceClause):
            conds = [
                and_(REF.c.target_id == i, REF.c.target_type == t) if t else REF.c.target_id == i
                for t, i in clause.values
            ]
            sub = select(REF.c.res_pk).where(REF.c.type == rtype, REF.c.param == clause.param, or_(*conds))
            return cast(ColumnElement[bool], pk.in_(sub))
        if isinstance(clause, ChainClause):
            target = R.alias("chain_target")
            target_ids = select(target.c.id).where(
                target.c.type == clause.target_type,
                target.c.deleted.is_(False),
                self._clause(clause.target_type, clause.inner, target),
            )
            return cast(
                ColumnElement[bool],
                pk.in_(
                    select(REF.c.res_pk).where(
                        REF.c.type == rtype,
                        REF.c.param == clause.param,
                        REF.c.target_type == clause.target_type,
                        REF.c.target_id.in_(target_ids),
                    )
                ),
            )
        if isinstance(clause, MissingClause):
            table = {"token": TOK, "string": STR, "date": DAT, "reference": REF}[clause.kind]
            present = exists().where(table.c.res_pk == pk, table.c.param == clause.param)
            return not_(present) if clause.missing else present
        if isinstance(clause, IdClause):
            return cast(ColumnElement[bool], res.c.id.in_(clause.ids))
        if isinstance(clause, LastUpdatedClause):
            col = res.c.last_updated_us
            return or_(*(self._date_match(col, col, v) for v in clause.values))
        if isinstance(clause, PatientKeyClause):
            return cast(ColumnElement[bool], res.c.patient_key.in_(clause.keys))
        if isinstance(clause, CareContextClause):
            local = R.alias("local_identity")
            return cast(
                ColumnElement[bool],
                res.c.patient_key.in_(
                    select(local.c.patient_key).where(
                        local.c.type == "Patient", local.c.org_id == clause.org_id, local.c.deleted.is_(False)
                    )
                ),
            )
        raise TypeError(f"unknown clause {clause!r}")

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

    def _sort_expr(self, rtype: str, key: SortKey) -> Any:
        if key.param == "_id":
            return R.c.id
        if key.param == "_lastUpdated":
            return R.c.last_updated_us
        agg = func.max if key.descending else func.min
        column = DAT.c.high if key.descending else DAT.c.low
        return (
            select(agg(column))
            .where(DAT.c.res_pk == R.c.pk, DAT.c.type == rtype, DAT.c.param == key.param)
            .scalar_subquery()
        )

    def _where(self, query: Query) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = [R.c.type == query.type, R.c.deleted.is_(False)]
        conds += [self._clause(query.type, c) for c in query.clauses]
        if query.snapshot is not None:
            conds.append(R.c.pk <= query.snapshot)
        return conds

    def search(self, query: Query) -> tuple[list[Stored], list[Any]]:
        """One page of matches, and the sort values of the last row (for the next page's cursor)."""
        exprs = [self._sort_expr(query.type, k) for k in query.sort]
        conds = self._where(query)
        if query.cursor is not None:
            conds.append(self._after(exprs, query.sort, query.cursor))
        labelled = [e.label(f"s{i}") for i, e in enumerate(exprs)]
        order: list[Any] = [
            e.desc().nulls_last() if k.descending else e.asc().nulls_last()
            for e, k in zip(exprs, query.sort, strict=True)
        ]
        order.append(R.c.pk.asc())
        stmt: Select[Any] = select(*self._COLS, *labelled).where(*conds).order_by(*order).limit(query.count + 1)
        rows = list(self.conn.execute(stmt))
        page = rows[: query.count]
        last: list[Any] = []
        if len(rows) > query.count and page:
            tail = page[-1]
            last = [getattr(tail, f"s{i}") for i in range(len(exprs))] + [tail.pk]
        return [self._stored(r) for r in page], last

    @staticmethod
    def _after(exprs: list[Any], sort: Sequence[SortKey], cursor: Sequence[Any]) -> ColumnElement[bool]:
        """Keyset condition: rows strictly after the cursor in (sort keys…, pk) order; NULL sort values last."""
        *values, last_pk = cursor
        ors: list[ColumnElement[bool]] = []
        for i in range(len(exprs) + 1):
            eqs: list[ColumnElement[bool]] = []
            for j in range(i):
                eqs.append(exprs[j].is_(None) if values[j] is None else exprs[j] == values[j])
            if i == len(exprs):
                eqs.append(R.c.pk > last_pk)
            else:
                e, v, desc = exprs[i], values[i], sort[i].descending
                if v is None:
                    continue  # nothing sorts after NULL within this key except by later keys
                after = (e < v) if desc else (e > v)
                eqs.append(or_(after, e.is_(None)))
            ors.append(and_(*eqs))
        return or_(*ors)

    def count(self, query: Query) -> int:
        return int(self.conn.execute(select(func.count()).select_from(R).where(*self._where(query))).scalar_one())

    def max_pk(self) -> int:
        return int(self.conn.execute(select(func.coalesce(func.max(R.c.pk), 0))).scalar_one())

    def referenced(self, pks: Sequence[int], params: Sequence[str]) -> list[tuple[str, str]]:
        if not pks or not params:
            return []
        rows = self.conn.execute(
            select(REF.c.target_type, REF.c.target_id).where(REF.c.res_pk.in_(pks), REF.c.param.in_(params)).distinct()
        )
        return [(r.target_type, r.target_id) for r in rows]

    def patients_by_key(self, keys: Sequence[str]) -> list[Stored]:
        rows = self.conn.execute(
            select(*self._COLS)
            .where(R.c.type == "Patient", R.c.patient_key.in_(keys), R.c.deleted.is_(False))
            .order_by(R.c.pk)
        )
        return [self._stored(r) for r in rows]

    def has_care_context(self, org_id: str, patient_key: str) -> bool:
        return (
            self.conn.execute(
                select(R.c.pk)
                .where(
                    R.c.type == "Patient", R.c.org_id == org_id, R.c.patient_key == patient_key, R.c.deleted.is_(False)
                )
                .limit(1)
            ).first()
            is not None
        )

    # ------------------------------------------------------------------ result index (recognition)
    def get_any(self, refs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Stored]:
        """Rows of ``refs`` whatever their state (deleted ones keep their last body)."""
        wanted = list(dict.fromkeys(refs))
        out: dict[tuple[str, str], Stored] = {}
        for i in range(0, len(wanted), 500):
            for row in self.conn.execute(select(*self._COLS).where(tuple_(R.c.type, R.c.id).in_(wanted[i : i + 500]))):
                out[(row.type, row.id)] = self._stored(row)
        return out

    def reports_listing(self, refs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[tuple[str, str]]]:
        """(type, id) of a result → the live DiagnosticReports that list it (``result`` / ``imagingStudy``)."""
        out: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for i in range(0, len(refs), 500):
            chunk = refs[i : i + 500]
            rows = self.conn.execute(
                select(REF.c.target_type, REF.c.target_id, R.c.type, R.c.id)
                .join(R, R.c.pk == REF.c.res_pk)
                .where(
                    REF.c.type == "DiagnosticReport",
                    REF.c.param.in_(("result", "imaging-study")),
                    # target_id = ANY(…) rather than a row-value IN: PostgreSQL turns the latter into an OR filter
                    # after an index range over every reference of the type (a second per call at 750k rows).
                    REF.c.target_id.in_(sorted({rid for _rt, rid in chunk})),
                    R.c.deleted.is_(False),
                )
            )
            wanted = set(chunk)
            for row in rows:
                if (row.target_type, row.target_id) in wanted:
                    out.setdefault((row.target_type, row.target_id), []).append((row.type, row.id))
        return out

    def replace_index_rows(self, res_pks: Sequence[int], rows: list[dict[str, Any]]) -> None:
        for i in range(0, len(res_pks), 1000):
            self.conn.execute(delete(RIX).where(RIX.c.res_pk.in_(res_pks[i : i + 1000])))
        self._bulk_insert(RIX, rows)

    def index_rows_of(self, refs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i in range(0, len(refs), 500):
            rows = self.conn.execute(  # through resource's (type, id) key and ix_result_res: no scan of the index
                select(RIX).join(R, R.c.pk == RIX.c.res_pk).where(tuple_(R.c.type, R.c.id).in_(refs[i : i + 500]))
            )
            out += [{k: v for k, v in r._mapping.items() if k != "pk"} for r in rows]
        return out

    def indexed_resources(self, after_pk: int, size: int, types: Iterable[str]) -> tuple[list[tuple[str, str]], int]:
        """A batch of (type, id) of these types in pk order after ``after_pk``, and the last pk seen."""
        rows = list(
            self.conn.execute(
                select(R.c.pk, R.c.type, R.c.id)
                .where(R.c.pk > after_pk, R.c.type.in_(sorted(types)))
                .order_by(R.c.pk)
                .limit(size)
            )
        )
        return [(r.type, r.id) for r in rows], (rows[-1].pk if rows else after_pk)

    def count_types(self, types: Iterable[str]) -> int:
        return int(self.conn.execute(select(func.count()).where(R.c.type.in_(sorted(types)))).scalar_one())

    def drop_orphan_index_rows(self) -> int:
        gone = select(R.c.pk).where(R.c.deleted.is_(True))
        return int(self.conn.execute(delete(RIX).where(RIX.c.res_pk.in_(gone))).rowcount or 0)

    def code_map_entries(self, org_ids: Sequence[str]) -> list[tuple[str, str, str, str]]:
        if not org_ids:
            return []
        rows = self.conn.execute(
            select(CMAP.c.org_id, CMAP.c.system, CMAP.c.code, CMAP.c.item_id).where(CMAP.c.org_id.in_(org_ids))
        )
        return [(r.org_id, r.system, r.code, r.item_id) for r in rows]

    def code_map_systems(self, concept_map_id: str) -> set[str]:
        rows = self.conn.execute(select(CMAP.c.system).where(CMAP.c.concept_map_id == concept_map_id).distinct())
        return {r.system for r in rows}

    def code_map_owners(self, org_id: str, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        out: dict[tuple[str, str], str] = {}
        for i in range(0, len(keys), 500):
            rows = self.conn.execute(
                select(CMAP.c.system, CMAP.c.code, CMAP.c.concept_map_id).where(
                    CMAP.c.org_id == org_id, tuple_(CMAP.c.system, CMAP.c.code).in_(keys[i : i + 500])
                )
            )
            out.update({(r.system, r.code): r.concept_map_id for r in rows})
        return out

    def replace_code_map(
        self, concept_map_id: str, org_id: str | None, entries: Sequence[tuple[str, str, str]]
    ) -> None:
        self.conn.execute(delete(CMAP).where(CMAP.c.concept_map_id == concept_map_id))
        if entries and org_id is not None:
            self.conn.execute(
                insert(CMAP),
                [{"org_id": org_id, "system": _clip(sy), "code": _clip(c), "item_id": item,
                  "concept_map_id": concept_map_id} for sy, c, item in entries],
            )  # fmt: skip

    def results_with_codes(self, org_id: str, systems: Iterable[str]) -> set[tuple[str, str]]:
        """Results of a hospital coded in these systems (to re-map after its code map changed), and its studies."""
        wanted = [_clip(s) for s in systems]
        out: set[tuple[str, str]] = set()
        if wanted:
            rows = self.conn.execute(
                select(R.c.type, R.c.id)
                .join(TOK, TOK.c.res_pk == R.c.pk)
                .where(
                    R.c.org_id == org_id,
                    TOK.c.type.in_(("DiagnosticReport", "Observation")),
                    TOK.c.param == "code",
                    TOK.c.system.in_(wanted),
                )
                .distinct()
            )
            out |= {(r.type, r.id) for r in rows}
        rows = self.conn.execute(
            select(R.c.type, R.c.id).where(R.c.org_id == org_id, R.c.type == "ImagingStudy", R.c.deleted.is_(False))
        )
        return out | {(r.type, r.id) for r in rows}

    def count_unmapped(self, codes: Sequence[Any], *, now: datetime) -> None:
        """Add one sighting per entry (upsert on hospital, system, code)."""
        counts: dict[tuple[str, str, str], list[Any]] = {}
        for u in codes:
            key = (u.org_id, _clip(u.system), _clip(u.code))
            if key in counts:
                counts[key][0] += 1
            else:
                counts[key] = [1, u.display[:255] if u.display else None, u.resource_type]
        stmt = self._upsert(UNM, ["org_id", "system", "code"])
        self.conn.execute(
            stmt,
            [{"org_id": o, "system": sy, "code": c, "display": d, "resource_type": t, "count": n, "first_seen": now,
              "last_seen": now} for (o, sy, c), (n, d, t) in counts.items()],
        )  # fmt: skip

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

    def unmapped_codes(self, org_id: str | None, limit: int) -> list[Any]:
        stmt = select(UNM)
        if org_id is not None:
            stmt = stmt.where(UNM.c.org_id == org_id)
        return list(self.conn.execute(stmt.order_by(UNM.c.count.desc(), UNM.c.system, UNM.c.code).limit(limit)))

    def identifier_system_known(self, rtype: str, system: str) -> bool:
        row = self.conn.execute(
            select(TOK.c.res_pk)
            .where(TOK.c.type == rtype, TOK.c.param == "identifier", TOK.c.system == _clip(system))
            .limit(1)
        ).first()
        return row is not None

    # ------------------------------------------------------------------ audit
    def add_audit(self, rows: Sequence[dict[str, Any]]) -> None:
        self._bulk_insert(AUD, list(rows))

    def audit_events(self, filters: AuditFilter) -> list[Any]:
        stmt = select(AUD)
        if filters.patient_keys is not None:
            stmt = stmt.where(AUD.c.patient_key.in_(filters.patient_keys))
        if filters.client_ids:
            stmt = stmt.where(AUD.c.client_id.in_(filters.client_ids))
        if filters.exclude_client_ids:
            stmt = stmt.where(or_(AUD.c.client_id.is_(None), AUD.c.client_id.not_in(filters.exclude_client_ids)))
        if filters.actions:
            stmt = stmt.where(AUD.c.action.in_(filters.actions))
        if filters.outcomes:
            stmt = stmt.where(AUD.c.outcome.in_(filters.outcomes))
        if filters.resource_types:
            stmt = stmt.where(AUD.c.resource_type.in_(filters.resource_types))
        for v in filters.dates:
            stmt = stmt.where(self._date_match(AUD.c.recorded_us, AUD.c.recorded_us, v))
        if filters.before_pk is not None:
            stmt = stmt.where(AUD.c.pk < filters.before_pk)
        if filters.pk is not None:
            stmt = stmt.where(AUD.c.pk == filters.pk)
        return list(self.conn.execute(stmt.order_by(AUD.c.pk.desc()).limit(filters.count)))


@dataclass(frozen=True, slots=True)
class AuditFilter:
    count: int = 50
    patient_keys: tuple[str, ...] | None = None
    client_ids: tuple[str, ...] = ()
    exclude_client_ids: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()
    resource_types: tuple[str, ...] = ()
    dates: tuple[DateValue, ...] = ()
    before_pk: int | None = None
    pk: int | None = None


class UnitOfWork:
    """One database transaction; commits when the block ends normally, rolls back on any exception."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def begin(self, *, audit_only: bool = False) -> Iterator[Repository]:
        with self.engine.begin() as conn:
            if audit_only and conn.dialect.name == "postgresql":
                # Read audits commit without waiting for the WAL flush: a crash may lose the last few hundred
                # milliseconds of read audits, never a write (writes audit inside their own transaction).
                conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            yield Repository(conn)
