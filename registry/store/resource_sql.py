"""Resources: reads by id, versions and history, business identifiers, and the batched write of a whole plan
(docs/design.md §4: stored as accepted, versioned, identifiers unique)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import cache
from typing import Any

import orjson
from sqlalchemy import (
    Select,
    String,
    and_,
    bindparam,
    column,
    delete,
    func,
    insert,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY

from registry.store.compiled import Compiled
from registry.store.records import (
    DAT,
    IDN,
    REF,
    STR,
    TOK,
    DuplicateIdentifierError,
    NewContent,
    R,
    Stored,
    StoredVersion,
    V,
    WritePlan,
    clip,
    utc,
)
from registry.store.sql_base import SqlBase

CARE_CONTEXT = Compiled(
    lambda _d: select(R.c.pk)
    .where(R.c.type == "Patient", R.c.org_id == bindparam("org"), R.c.patient_key == bindparam("key"),
           R.c.deleted.is_(False))
    .limit(1)
)  # fmt: skip

# The business identifiers a write claims, each once: the rows inserted are those not already held. (An
# ``INSERT … ON CONFLICT DO NOTHING RETURNING`` of many rows in parameter order is sent one row per statement.)
_PG_CLAIM_IDENTIFIERS = text(
    "INSERT INTO resource_identifier (type, system, value, res_pk) "
    "SELECT * FROM unnest(CAST(:i_types AS varchar[]), CAST(:i_systems AS varchar[]), CAST(:i_values AS varchar[]), "
    "CAST(:i_pks AS bigint[])) ON CONFLICT DO NOTHING RETURNING res_pk"
)
_PG_NEXT_PKS = text("SELECT nextval(pg_get_serial_sequence('resource', 'pk')) FROM generate_series(1, :n)")


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
        IDN.c.type.label("i_type"), IDN.c.system.label("i_system"), IDN.c.value.label("i_value"), *SqlBase._COLS
    ).select_from(w.join(IDN, on).join(R, IDN.c.res_pk == R.c.pk))


class ResourceSql(SqlBase):
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
            cond, params = self._type_id_in(wanted[i : i + 500])
            rows = self.conn.execute(select(*self._COLS).where(cond, R.c.deleted.is_(False)), params)
            for row in rows:
                out[(row.type, row.id)] = self._stored(row)
        return out

    def live_facts(self, refs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[str | None, str | None]]:
        """(type, id) → (patient_key, org_id) of each live resource among ``refs``; missing ones are absent."""
        wanted = list(dict.fromkeys(refs))
        if not wanted:
            return {}
        cond, params = self._type_id_in(wanted)
        rows = self.conn.execute(
            select(R.c.type, R.c.id, R.c.patient_key, R.c.org_id).where(cond, R.c.deleted.is_(False)), params
        )
        return {(r.type, r.id): (r.patient_key, r.org_id) for r in rows}

    def org_of(self, refs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str | None]:
        wanted = list(dict.fromkeys(refs))
        if not wanted:
            return {}
        cond, params = self._type_id_in(wanted)
        rows = self.conn.execute(select(R.c.type, R.c.id, R.c.org_id).where(cond, R.c.deleted.is_(False)), params)
        return {(r.type, r.id): r.org_id for r in rows}

    @staticmethod
    def _version(r: Any) -> StoredVersion:
        body = bytes(r.body) if r.body is not None else None
        return StoredVersion(r.type, r.id, r.version, utc(r.last_updated), r.method, r.deleted, body)

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

    def get_for_write(self, refs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Stored]:
        """Current rows (deleted ones included) of ``refs``, locked on PostgreSQL until the transaction ends."""
        wanted = list(dict.fromkeys(refs))
        out: dict[tuple[str, str], Stored] = {}
        for i in range(0, len(wanted), 500):
            cond, params = self._type_id_in(wanted[i : i + 500])
            stmt = select(*self._COLS).where(cond)
            if self.postgres:
                stmt = stmt.with_for_update(of=R)
            for row in self.conn.execute(stmt, params):
                out[(row.type, row.id)] = self._stored(row)
        return out

    def by_identifiers(self, keys: Iterable[tuple[str, str, str]]) -> dict[tuple[str, str, str], Stored]:
        """(type, system, value) → the live resource holding that business identifier."""
        wanted = sorted({(t, clip(sy), clip(v)) for t, sy, v in keys})
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
                 "body": c.body, "doc": self._doc_text(c) if self.postgres else None}
                for c in plan.creates
            ]  # fmt: skip
            if self.postgres:
                # keys drawn first, then one COPY: an INSERT … RETURNING of many rows is one statement text per
                # row count, which the driver parses anew each time (~30 ms for a Bundle of 140 resources)
                pks = list(self.conn.execute(_PG_NEXT_PKS, {"n": len(rows)}).scalars())
                for row, pk in zip(rows, pks, strict=True):
                    row["pk"] = pk
                self._bulk_insert(R, rows, always_copy=True)
            else:
                pks = list(self.conn.execute(insert(R).returning(R.c.pk, sort_by_parameter_order=True), rows).scalars())
            for c, pk in zip(plan.creates, pks, strict=True):
                pk_of[(c.type, c.id)] = pk
                written[(c.type, c.id)] = Stored(pk, c.type, c.id, 1, now, False, c.patient_key, c.org_id,
                                                 c.content_hash, c.body)  # fmt: skip
        touched = [existing.pk for existing, _c in plan.replaces] + [d.pk for d in plan.deletes]
        if touched:
            for table in (TOK, STR, DAT, REF, IDN):
                cond, params = self._pks_in(table.c.res_pk, touched)
                self.conn.execute(delete(table).where(cond), params)
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
            {"type": c.type, "system": clip(sy), "value": clip(v), "res_pk": pk_of[(c.type, c.id)]}
            for c in contents
            for sy, v in sorted(c.identifiers)
        ]
        if identifiers:
            if self.postgres:  # one statement with four array parameters, whatever the number of rows
                claimed = self.conn.execute(_PG_CLAIM_IDENTIFIERS, {
                    "i_types": [r["type"] for r in identifiers], "i_systems": [r["system"] for r in identifiers],
                    "i_values": [r["value"] for r in identifiers], "i_pks": [r["res_pk"] for r in identifiers],
                }).all()  # fmt: skip
            else:
                claimed = self.conn.execute(self._insert_ignore(IDN).returning(IDN.c.res_pk), identifiers).all()
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

    def _index_many(self, items: Sequence[tuple[int, NewContent]]) -> None:
        tokens: list[dict[str, Any]] = []
        strings: list[dict[str, Any]] = []
        dates: list[dict[str, Any]] = []
        refs: list[dict[str, Any]] = []
        for pk, c in items:
            t, idx = c.type, c.index
            for p, sy, code in {(p, clip(sy), clip(code)) for p, sy, code in idx.tokens}:
                tokens.append({"res_pk": pk, "param": p, "system": sy, "code": code, "type": t})
            seen: dict[tuple[str, str], str] = {}
            for p, norm, exact in idx.strings:
                seen.setdefault((p, clip(norm)), clip(exact))
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

    def _doc_text(self, content: NewContent) -> str | None:
        # the same JSONB from the stored text itself, for COPY (PostgreSQL parses it; nothing parsed here)
        return content.body.decode() if self.postgres else None

    def get_any(self, refs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Stored]:
        """Rows of ``refs`` whatever their state (deleted ones keep their last body)."""
        wanted = list(dict.fromkeys(refs))
        out: dict[tuple[str, str], Stored] = {}
        for i in range(0, len(wanted), 500):
            cond, params = self._type_id_in(wanted[i : i + 500])
            for row in self.conn.execute(select(*self._COLS).where(cond), params):
                out[(row.type, row.id)] = self._stored(row)
        return out

    def patients_by_key(self, keys: Sequence[str]) -> list[Stored]:
        rows = self.conn.execute(
            select(*self._COLS)
            .where(R.c.type == "Patient", R.c.patient_key.in_(keys), R.c.deleted.is_(False))
            .order_by(R.c.pk)
        )
        return [self._stored(r) for r in rows]

    def has_care_context(self, org_id: str, patient_key: str) -> bool:
        return CARE_CONTEXT.first(self.conn, {"org": org_id, "key": patient_key}) is not None

    def max_pk(self) -> int:
        return int(self.conn.execute(select(func.coalesce(func.max(R.c.pk), 0))).scalar_one())

    def referenced(self, pks: Sequence[int], params: Sequence[str]) -> list[tuple[str, str]]:
        if not pks or not params:
            return []
        rows = self.conn.execute(
            select(REF.c.target_type, REF.c.target_id).where(REF.c.res_pk.in_(pks), REF.c.param.in_(params)).distinct()
        )
        return [(r.target_type, r.target_id) for r in rows]
