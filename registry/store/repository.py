"""The resource repository: every SQL statement about FHIR resources lives here (DESIGN.md §2: route handlers hold no
queries). Services open a :class:`UnitOfWork`, call the repository inside it, and the unit commits whole or not at
all.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Select,
    and_,
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
from sqlalchemy.exc import IntegrityError

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


def encode_cursor(values: Sequence[Any], snapshot: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"v": list(values), "s": snapshot})).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[tuple[Any, ...], int]:
    """Raises ValueError for a token this server did not make."""
    padded = token + "=" * (-len(token) % 4)
    try:
        data = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
        values, snapshot = tuple(data["v"]), int(data["s"])
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise ValueError(f"not a paging cursor of this server: {exc}") from None
    if not values or not isinstance(values[-1], int):
        raise ValueError("not a paging cursor of this server")
    return values, snapshot


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored in UTC); PostgreSQL aware ones."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _clip(text: str) -> str:
    return text[:MAX_INDEX_TEXT]


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

    def version(self, rtype: str, rid: str, version: int) -> StoredVersion | None:
        row = self.conn.execute(select(V).where(V.c.type == rtype, V.c.id == rid, V.c.version == version)).first()
        return self._version(row) if row else None

    def history(self, rtype: str, rid: str, *, count: int, below: int | None = None) -> list[StoredVersion]:
        stmt = select(V).where(V.c.type == rtype, V.c.id == rid)
        if below is not None:
            stmt = stmt.where(V.c.version < below)
        rows = self.conn.execute(stmt.order_by(V.c.version.desc()).limit(count))
        return [self._version(r) for r in rows]

    def history_total(self, rtype: str, rid: str) -> int:
        return int(self.conn.execute(select(func.count()).where(V.c.type == rtype, V.c.id == rid)).scalar_one())

    def by_identifier(self, rtype: str, system: str, value: str) -> Stored | None:
        row = self.conn.execute(
            select(*self._COLS)
            .join(IDN, IDN.c.res_pk == R.c.pk)
            .where(IDN.c.type == rtype, IDN.c.system == system, IDN.c.value == value)
        ).first()
        return self._stored(row) if row is not None else None

    # ------------------------------------------------------------------ writes
    def _index_rows(self, pk: int, content: NewContent) -> None:
        t = content.type
        idx = content.index
        if idx.tokens:
            rows = {(p, _clip(s), _clip(c)) for p, s, c in idx.tokens}
            self.conn.execute(
                insert(TOK), [{"res_pk": pk, "param": p, "system": s, "code": c, "type": t} for p, s, c in rows]
            )
        if idx.strings:
            seen: dict[tuple[str, str], str] = {}
            for p, norm, exact in idx.strings:
                seen.setdefault((p, _clip(norm)), _clip(exact))
            self.conn.execute(
                insert(STR),
                [{"res_pk": pk, "param": p, "value": v, "exact": e, "type": t} for (p, v), e in seen.items()],
            )
        if idx.dates:
            self.conn.execute(
                insert(DAT), [{"res_pk": pk, "param": p, "low": lo, "high": hi, "type": t} for p, lo, hi in idx.dates]
            )
        if idx.references:
            self.conn.execute(
                insert(REF),
                [
                    {"res_pk": pk, "param": p, "target_type": tt, "target_id": ti, "type": t}
                    for p, tt, ti in idx.references
                ],
            )

    def _clear_index(self, pk: int) -> None:
        for table in (TOK, STR, DAT, REF):
            self.conn.execute(delete(table).where(table.c.res_pk == pk))
        self.conn.execute(delete(IDN).where(IDN.c.res_pk == pk))

    def _claim_identifiers(self, pk: int, content: NewContent) -> None:
        if not content.identifiers:
            return
        try:
            with self.conn.begin_nested():
                self.conn.execute(
                    insert(IDN),
                    [
                        {"type": content.type, "system": _clip(s), "value": _clip(v), "res_pk": pk}
                        for s, v in sorted(content.identifiers)
                    ],
                )
        except IntegrityError:
            raise DuplicateIdentifierError(f"{content.type} identifier already in use") from None

    def _doc(self, content: NewContent) -> Any:
        # JSONB copy for ad-hoc SQL on PostgreSQL only; SQLite reads the body itself.
        return orjson.loads(content.body) if self.postgres else None

    def insert(self, content: NewContent, *, now: datetime, now_us: int, method: str = "POST") -> Stored:
        pk = self.conn.execute(
            insert(R)
            .values(
                type=content.type,
                id=content.id,
                version=1,
                last_updated=now,
                last_updated_us=now_us,
                deleted=False,
                patient_key=content.patient_key,
                org_id=content.org_id,
                content_hash=content.content_hash,
                body=content.body,
                doc=self._doc(content),
            )
            .returning(R.c.pk)
        ).scalar_one()
        self._claim_identifiers(pk, content)
        self.conn.execute(
            insert(V).values(
                type=content.type,
                id=content.id,
                version=1,
                last_updated=now,
                method=method,
                deleted=False,
                body=content.body,
            )
        )
        self._index_rows(pk, content)
        return Stored(
            pk,
            content.type,
            content.id,
            1,
            now,
            False,
            content.patient_key,
            content.org_id,
            content.content_hash,
            content.body,
        )

    def replace(self, existing: Stored, content: NewContent, *, now: datetime, now_us: int) -> Stored:
        version = existing.version + 1
        self._clear_index(existing.pk)
        self.conn.execute(
            update(R)
            .where(R.c.pk == existing.pk)
            .values(
                version=version,
                last_updated=now,
                last_updated_us=now_us,
                deleted=False,
                patient_key=content.patient_key,
                org_id=content.org_id,
                content_hash=content.content_hash,
                body=content.body,
                doc=self._doc(content),
            )
        )
        self._claim_identifiers(existing.pk, content)
        self.conn.execute(
            insert(V).values(
                type=content.type,
                id=content.id,
                version=version,
                last_updated=now,
                method="PUT",
                deleted=False,
                body=content.body,
            )
        )
        self._index_rows(existing.pk, content)
        return Stored(
            existing.pk,
            content.type,
            content.id,
            version,
            now,
            False,
            content.patient_key,
            content.org_id,
            content.content_hash,
            content.body,
        )

    def mark_deleted(self, existing: Stored, *, now: datetime, now_us: int) -> int:
        version = existing.version + 1
        self._clear_index(existing.pk)
        self.conn.execute(
            update(R)
            .where(R.c.pk == existing.pk)
            .values(version=version, last_updated=now, last_updated_us=now_us, deleted=True)
        )
        self.conn.execute(
            insert(V).values(
                type=existing.type,
                id=existing.id,
                version=version,
                last_updated=now,
                method="DELETE",
                deleted=True,
                body=None,
            )
        )
        return version

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

    def identifier_system_known(self, rtype: str, system: str) -> bool:
        row = self.conn.execute(
            select(TOK.c.res_pk)
            .where(TOK.c.type == rtype, TOK.c.param == "identifier", TOK.c.system == _clip(system))
            .limit(1)
        ).first()
        return row is not None

    # ------------------------------------------------------------------ audit
    def add_audit(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(insert(AUD), list(rows))

    def audit_events(self, filters: AuditFilter) -> list[Any]:
        stmt = select(AUD)
        if filters.patient_keys is not None:
            stmt = stmt.where(AUD.c.patient_key.in_(filters.patient_keys))
        if filters.client_ids:
            stmt = stmt.where(AUD.c.client_id.in_(filters.client_ids))
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
