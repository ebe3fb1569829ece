"""SQL for the patients' sharing consent (docs/design.md §6 consent): the projection rows read by the policy on every
check, replaced in the transaction that writes the patient's ``Consent`` resource; and the predicate that tells a
sensitive result (its catalog item, or for a report any of its results) apart in SQL."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    delete,
    exists,
    false,
    insert,
    null,
    or_,
    select,
    union_all,
)

from registry.store.compiled import Compiled
from registry.store.consent_tables import ALL_HOSPITALS
from registry.store.records import RIX
from registry.store.tables import metadata

SR = cast(Any, metadata.tables["share_restriction"])
SS = cast(Any, metadata.tables["sensitive_share"])


@dataclass(frozen=True, slots=True)
class SharingRows:
    """One patient's projection: the hospitals paused (``*``: all others) and the separate sensitive consent."""

    paused: frozenset[str] = frozenset()
    sensitive_shared: bool = False

    @classmethod
    def of_rows(cls, rows: Sequence[Any]) -> SharingRows:
        """From the rows of ``SHARING_ROWS``: a hospital each, and a row with no hospital for the sensitive consent."""
        return cls(frozenset(r.org_id for r in rows if r.org_id is not None), any(r.org_id is None for r in rows))


def paused_for(res: Any, org_id: str) -> ColumnElement[bool]:
    """The resource row's patient paused sharing with ``org_id`` (or with every other hospital)."""
    return exists().where(SR.c.patient_key == res.c.patient_key, SR.c.org_id.in_([org_id, ALL_HOSPITALS]))


def sensitive_shared(res: Any) -> ColumnElement[bool]:
    return exists().where(SS.c.patient_key == res.c.patient_key)


def is_sensitive(res: Any, sensitive_items: Sequence[str]) -> ColumnElement[bool]:
    """The resource row is a sensitive result: a result-index row of it maps to a sensitive item, or — for a
    DiagnosticReport — one of the report's results does."""
    if not sensitive_items:
        return false()
    return exists().where(
        RIX.c.item_id.in_(list(sensitive_items)),
        or_(
            RIX.c.res_pk == res.c.pk,
            and_(res.c.type == "DiagnosticReport", RIX.c.patient_key == res.c.patient_key,
                 RIX.c.report_id == res.c.id),
        ),
    )  # fmt: skip


SHARING_ROWS = Compiled(
    lambda _d: union_all(
        select(SR.c.org_id).where(SR.c.patient_key == bindparam("key")),
        select(null().label("org_id")).where(SS.c.patient_key == bindparam("key")),
    )
)


class ConsentStore:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def sharing(self, patient_key: str) -> SharingRows:
        # one round trip: the hospitals sharing is paused for, and (a row with no hospital) sensitive sharing
        return SharingRows.of_rows(SHARING_ROWS.all(self.conn, {"key": patient_key}))

    def replace(
        self, patient_key: str, paused: Iterable[str], sensitive: bool, consent_id: str, *, now: datetime
    ) -> None:
        """The patient's whole projection, replaced (in the transaction that writes their Consent)."""
        self.conn.execute(delete(SR).where(SR.c.patient_key == patient_key))
        self.conn.execute(delete(SS).where(SS.c.patient_key == patient_key))
        rows = [{"patient_key": patient_key, "org_id": o, "consent_id": consent_id, "since": now}
                for o in sorted(set(paused))]  # fmt: skip
        if rows:
            self.conn.execute(insert(SR), rows)
        if sensitive:
            self.conn.execute(insert(SS), [{"patient_key": patient_key, "consent_id": consent_id, "since": now}])

    def sensitive_reports(
        self, patient_key: str, report_ids: Sequence[str], sensitive_items: Sequence[str]
    ) -> set[str]:
        """Which of the patient's reports hold a sensitive result (or are of a sensitive item themselves)."""
        if not report_ids or not sensitive_items:
            return set()
        rows = self.conn.execute(
            select(RIX.c.report_id)
            .where(RIX.c.patient_key == patient_key, RIX.c.report_id.in_(list(report_ids)),
                   RIX.c.item_id.in_(list(sensitive_items)))
            .distinct()
        )  # fmt: skip
        return {r.report_id for r in rows}

    def resource_is_sensitive(self, res_table: Any, pk: int, sensitive_items: Sequence[str]) -> bool:
        return (
            self.conn.execute(
                select(res_table.c.pk).where(res_table.c.pk == pk, is_sensitive(res_table, sensitive_items))
            ).first()
            is not None
        )
