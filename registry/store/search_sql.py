"""Search SQL (FHIR R4 §search): each clause as a predicate over the search-value tables, date ranges compared as R4
says, keyset paging in (sort keys…, pk) order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    exists,
    func,
    intersect,
    literal,
    not_,
    or_,
    select,
)

from registry.store.consent import is_sensitive, paused_for, sensitive_shared
from registry.store.query import (
    CareContextClause,
    ChainClause,
    Clause,
    DateClause,
    IdClause,
    LastUpdatedClause,
    MissingClause,
    OrgClause,
    PatientKeyClause,
    Query,
    ReferenceClause,
    SharingClause,
    SortKey,
    StringClause,
    TokenClause,
    TokenValue,
)
from registry.store.records import (
    DAT,
    REF,
    STR,
    TOK,
    R,
    Stored,
    clip,
)
from registry.store.sql_base import SqlBase


class SearchSql(SqlBase):
    def _token_match(self, table: Any, values: Sequence[TokenValue]) -> ColumnElement[bool]:
        """OR of the values, codes grouped per system into IN lists: a flat predicate however many values are sent
        (SQLite refuses an expression tree deeper than 1000)."""
        codes: dict[str | None, list[str]] = {}
        any_code: list[str] = []  # ``system|``: every code of these systems
        for v in values:
            if v.code is None:
                if v.system is None:
                    return literal(True)
                any_code.append(clip(v.system))
            else:
                codes.setdefault(None if v.system is None else clip(v.system), []).append(clip(v.code))
        parts: list[ColumnElement[bool]] = []
        if any_code:
            parts.append(table.c.system.in_(any_code))
        for system, listed in codes.items():
            match = table.c.code.in_(listed)
            parts.append(match if system is None else and_(table.c.system == system, match))
        return or_(*parts)

    def _members(self, rtype: str, clause: Clause) -> Select[Any] | None:
        """The ``pk``s a positive clause on a search-value table admits (token, string, date, reference, chain), as
        one SELECT; ``None`` for the clauses that are a predicate on the resource row itself."""
        if isinstance(clause, TokenClause) and not clause.negate:
            return self._token_pks(rtype, clause)
        if isinstance(clause, StringClause):
            if clause.mode == "exact":
                cond = STR.c.exact.in_([clip(v) for v in clause.values])
            elif clause.mode == "contains":
                cond = or_(*(STR.c.value.contains(v, autoescape=True) for v in clause.values))
            else:
                cond = or_(*(STR.c.value.startswith(v, autoescape=True) for v in clause.values))
            return select(STR.c.res_pk).where(STR.c.type == rtype, STR.c.param == clause.param, cond)
        if isinstance(clause, DateClause):
            return select(DAT.c.res_pk).where(
                DAT.c.type == rtype,
                DAT.c.param == clause.param,
                or_(*(self._date_match(DAT.c.low, DAT.c.high, v) for v in clause.values)),
            )
        if isinstance(clause, ReferenceClause):
            conds = [
                and_(REF.c.target_id == i, REF.c.target_type == t) if t else REF.c.target_id == i
                for t, i in clause.values
            ]
            return select(REF.c.res_pk).where(REF.c.type == rtype, REF.c.param == clause.param, or_(*conds))
        if isinstance(clause, ChainClause):
            target = R.alias("chain_target")
            target_ids = select(target.c.id).where(
                target.c.type == clause.target_type,
                target.c.deleted.is_(False),
                self._clause(clause.target_type, clause.inner, target),
            )
            return select(REF.c.res_pk).where(
                REF.c.type == rtype,
                REF.c.param == clause.param,
                REF.c.target_type == clause.target_type,
                REF.c.target_id.in_(target_ids),
            )
        return None

    def _token_pks(self, rtype: str, clause: TokenClause) -> Select[Any]:
        return select(TOK.c.res_pk).where(
            TOK.c.type == rtype, TOK.c.param == clause.param, self._token_match(TOK, clause.values)
        )

    def _clause(self, rtype: str, clause: Clause, res: Any = R) -> ColumnElement[bool]:
        """The SQL predicate for one clause over the resource table ``res`` (an alias for chained targets)."""
        pk = res.c.pk
        members = self._members(rtype, clause)
        if members is not None:
            return cast(ColumnElement[bool], pk.in_(members))
        if isinstance(clause, TokenClause):  # negated
            return cast(ColumnElement[bool], pk.not_in(self._token_pks(rtype, clause)))
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
        if isinstance(clause, OrgClause):
            return cast(ColumnElement[bool], res.c.org_id == clause.org_id)
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
        if isinstance(clause, SharingClause):
            withheld = or_(
                paused_for(res, clause.org_id),
                and_(is_sensitive(res, clause.sensitive_items), not_(sensitive_shared(res))),
            )
            return or_(res.c.org_id == clause.org_id, not_(withheld))
        raise TypeError(f"unknown clause {clause!r}")

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
        """The search's predicates. The clauses on the search-value tables are AND-ed as one ``pk IN (… INTERSECT
        …)``: as many ``IN`` semi-joins the PostgreSQL planner joins in ever worse orders (40 ``name=`` took seconds,
        80 minutes), an INTERSECT of index scans costs what its parts cost."""
        conds: list[ColumnElement[bool]] = [R.c.type == query.type, R.c.deleted.is_(False)]
        members: list[Select[Any]] = []
        for clause in query.clauses:
            sub = self._members(query.type, clause)
            if sub is None:
                conds.append(self._clause(query.type, clause))
            else:
                members.append(sub)
        if len(members) == 1:
            conds.append(R.c.pk.in_(members[0]))
        elif members:
            conds.append(R.c.pk.in_(intersect(*members)))
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
