"""The result index (recognition's hot path, docs/design.md §4), hospitals' code maps and the unmapped codes they
leave."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    delete,
    func,
    insert,
    select,
    tuple_,
)

from registry.store.records import (
    CMAP,
    REF,
    RIX,
    TOK,
    UNM,
    R,
    clip,
)
from registry.store.sql_base import SqlBase


class IndexSql(SqlBase):
    def reports_listing(self, refs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[tuple[str, str]]]:
        """(type, id) of a result → the live DiagnosticReports that list it (``result`` / ``imagingStudy``)."""
        out: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for i in range(0, len(refs), 500):
            chunk = refs[i : i + 500]
            # target_id = ANY(…) rather than a row-value IN: PostgreSQL turns the latter into an OR filter after an
            # index range over every reference of the type (a second per call at 750k rows).
            among, params = self._values_in(REF.c.target_id, sorted({rid for _rt, rid in chunk}))
            rows = self.conn.execute(
                select(REF.c.target_type, REF.c.target_id, R.c.type, R.c.id)
                .join(R, R.c.pk == REF.c.res_pk)
                .where(
                    REF.c.type == "DiagnosticReport",
                    REF.c.param.in_(("result", "imaging-study")),
                    among,
                    R.c.deleted.is_(False),
                ),
                params,
            )
            wanted = set(chunk)
            for row in rows:
                if (row.target_type, row.target_id) in wanted:
                    out.setdefault((row.target_type, row.target_id), []).append((row.type, row.id))
        return out

    def replace_index_rows(self, res_pks: Sequence[int], rows: list[dict[str, Any]]) -> None:
        for i in range(0, len(res_pks), 1000):
            cond, params = self._pks_in(RIX.c.res_pk, res_pks[i : i + 1000])
            self.conn.execute(delete(RIX).where(cond), params)
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
                [{"org_id": org_id, "system": clip(sy), "code": clip(c), "item_id": item,
                  "concept_map_id": concept_map_id} for sy, c, item in entries],
            )  # fmt: skip

    def results_with_codes(self, org_id: str, systems: Iterable[str]) -> set[tuple[str, str]]:
        """Results of a hospital coded in these systems (to re-map after its code map changed), and its studies."""
        wanted = [clip(s) for s in systems]
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
            key = (u.org_id, clip(u.system), clip(u.code))
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

    def unmapped_codes(self, org_id: str | None, limit: int) -> list[Any]:
        stmt = select(UNM)
        if org_id is not None:
            stmt = stmt.where(UNM.c.org_id == org_id)
        return list(self.conn.execute(stmt.order_by(UNM.c.count.desc(), UNM.c.system, UNM.c.code).limit(limit)))

    def identifier_system_known(self, rtype: str, system: str) -> bool:
        row = self.conn.execute(
            select(TOK.c.res_pk)
            .where(TOK.c.type == rtype, TOK.c.param == "identifier", TOK.c.system == clip(system))
            .limit(1)
        ).first()
        return row is not None
