"""SQL for recognition: the result-index lookups (the order check's hot path, a report's rows for the portal, a
card's result when its decision arrives), organizations' regions, qualifications, unmapped codes, cards, checks,
decisions, and the patient-view reminder cards with their feedback. The statistics queries are in
``registry.store.statistics``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import ColumnElement, Connection, Select, and_, bindparam, delete, insert, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from registry.store.compiled import Compiled, insert_rows, one_of
from registry.store.records import clip
from registry.store.tables import metadata

RIX = cast(Any, metadata.tables["result_index"])
R = cast(Any, metadata.tables["resource"])
QUAL = cast(Any, metadata.tables["qualification"])
CARD = cast(Any, metadata.tables["recognition_card"])
CHECK = cast(Any, metadata.tables["order_check"])
DEC = cast(Any, metadata.tables["decision"])
UNM = cast(Any, metadata.tables["unmapped_code"])
REM = cast(Any, metadata.tables["reminder_card"])
REMF = cast(Any, metadata.tables["reminder_feedback"])

AUD = cast(Any, metadata.tables["audit_event"])

REGION_EXT = "https://hr-registry.org.cn/fhir/StructureDefinition/recognition-region"

RESULTS_FOR = Compiled(
    lambda d: select(RIX)
    .where(RIX.c.patient_key == bindparam("key"), one_of(RIX.c.item_id, "items", d),
           RIX.c.effective_us >= bindparam("since"))
    .order_by(RIX.c.effective_us.desc())
)  # fmt: skip


def members_of(reports: ColumnElement[bool]) -> Select[Any]:
    """The patient's (bound as ``key``) Observation rows whose report satisfies ``reports``: a panel's values."""
    return (
        select(RIX)
        .where(RIX.c.patient_key == bindparam("key"), reports, RIX.c.res_type == "Observation")
        .order_by(RIX.c.item_id)
    )


_REPORT_MEMBERS = Compiled(lambda d: members_of(one_of(RIX.c.report_id, "reports", d)))


@dataclass(frozen=True, slots=True)
class Org:
    id: str
    name: str
    regions: frozenset[str]


class RecognitionStore:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # ------------------------------------------------------------------ the hot path
    def results_for(self, patient_key: str, item_ids: Sequence[str], since_us: int) -> list[Any]:
        """Index rows of one patient for these items, effective since ``since_us``, newest first."""
        if not item_ids:
            return []
        return list(RESULTS_FOR.all(self.conn, {"key": patient_key, "items": list(item_ids), "since": since_us}))

    def results_of_patient(self, patient_key: str, since_us: int) -> list[Any]:
        return list(
            self.conn.execute(
                select(RIX)
                .where(RIX.c.patient_key == patient_key, RIX.c.effective_us >= since_us)
                .order_by(RIX.c.effective_us.desc())
            )
        )

    def report_members(self, patient_key: str, report_ids: Sequence[str]) -> list[Any]:
        """The Observation rows a report lists (the values of a panel)."""
        if not report_ids:
            return []
        return list(_REPORT_MEMBERS.all(self.conn, {"key": patient_key, "reports": list(report_ids)}))

    def result_rows(self, patient_key: str, ref: str) -> list[Any]:
        """The index rows of one result (``Type/id``) of this patient — none once it is withdrawn or deleted."""
        rtype, _, rid = ref.partition("/")
        return list(
            self.conn.execute(
                select(RIX).where(RIX.c.patient_key == patient_key, RIX.c.res_type == rtype, RIX.c.res_id == rid)
            )
        )

    def rows_of_results(self, refs: Sequence[tuple[str, str]]) -> list[Any]:
        """The index rows of these resources ``(type, id)`` and of the results their DiagnosticReports list
        (``report_id``), for showing how long each stays recognizable."""
        out: list[Any] = []
        for i in range(0, len(refs), 500):
            chunk = list(refs[i : i + 500])
            owners = list(
                self.conn.execute(
                    select(R.c.pk, R.c.id, R.c.type, R.c.patient_key).where(
                        tuple_(R.c.type, R.c.id).in_(chunk), R.c.patient_key.is_not(None)
                    )
                )
            )
            if not owners:
                continue
            where = RIX.c.res_pk.in_([o.pk for o in owners])
            reports = [o.id for o in owners if o.type == "DiagnosticReport"]
            if reports:  # through the patient's key (ix_result_lookup), never a scan of the whole index
                keys = sorted({o.patient_key for o in owners})
                where = or_(where, and_(RIX.c.patient_key.in_(keys), RIX.c.report_id.in_(reports)))
            out += list(self.conn.execute(select(RIX).where(where).order_by(RIX.c.res_pk, RIX.c.item_id)))
        return out

    def forget_unmapped(self, org_id: str, codes: Iterable[tuple[str, str]]) -> int:
        """Remove a hospital's unmapped-code rows for these (system, code): its code map now maps them."""
        keys = sorted({(clip(system), clip(code)) for system, code in codes})
        gone = 0
        for i in range(0, len(keys), 500):
            result = self.conn.execute(
                delete(UNM).where(UNM.c.org_id == org_id, tuple_(UNM.c.system, UNM.c.code).in_(keys[i : i + 500]))
            )
            gone += int(result.rowcount or 0)
        return gone

    def organizations(self, org_ids: Iterable[str]) -> dict[str, Org]:
        wanted = sorted({o for o in org_ids if o})
        if not wanted:
            return {}
        rows = self.conn.execute(
            select(R.c.id, R.c.body).where(R.c.type == "Organization", R.c.id.in_(wanted), R.c.deleted.is_(False))
        )
        out: dict[str, Org] = {}
        for row in rows:
            body = orjson.loads(row.body)
            regions = frozenset(
                str(e["valueCode"])
                for e in body.get("extension") or []
                if isinstance(e, dict) and e.get("url") == REGION_EXT and isinstance(e.get("valueCode"), str)
            )
            out[row.id] = Org(row.id, str(body.get("name") or row.id), regions)
        return out

    # ------------------------------------------------------------------ qualifications
    def qualifications(self, org_ids: Iterable[str] | None = None, *, include_revoked: bool = False) -> list[Any]:
        stmt = select(QUAL)
        if org_ids is not None:
            stmt = stmt.where(QUAL.c.org_id.in_(sorted(set(org_ids))))
        if not include_revoked:
            stmt = stmt.where(QUAL.c.revoked.is_(None))
        return list(self.conn.execute(stmt.order_by(QUAL.c.org_id, QUAL.c.valid_from, QUAL.c.id)))

    def add_qualification(self, row: dict[str, Any]) -> None:
        self.conn.execute(insert(QUAL).values(**row))

    def revoke_qualification(self, qual_id: str, now: datetime) -> bool:
        result = self.conn.execute(
            update(QUAL).where(QUAL.c.id == qual_id, QUAL.c.revoked.is_(None)).values(revoked=now)
        )
        return bool(result.rowcount)

    # ------------------------------------------------------------------ cards, checks, decisions
    def add_cards(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(insert(CARD), list(rows))

    def add_checks(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(insert(CHECK), list(rows))

    def add_check_log(
        self, checks: Sequence[dict[str, Any]], cards: Sequence[dict[str, Any]], audit: Sequence[dict[str, Any]]
    ) -> None:
        """An order check's log, cards and audit rows, in one round trip on PostgreSQL."""
        insert_rows(self.conn, [(CHECK, checks), (CARD, cards), (AUD, audit)], closing=True)

    def card(self, uuid: str) -> Any | None:
        """The card ``uuid`` names (feedback names no patient: on PostgreSQL one index probe per partition)."""
        return self.conn.execute(select(CARD).where(CARD.c.uuid == uuid)).first()

    def decision_for(self, card_uuid: str, patient_key: str) -> Any | None:
        """The decision on a card of ``patient_key`` (one partition)."""
        return self.conn.execute(
            select(DEC).where(DEC.c.card_uuid == card_uuid, DEC.c.patient_key == patient_key)
        ).first()

    def add_decision(self, row: dict[str, Any]) -> bool:
        """False when the card already has a decision (a repeated post); ``row`` holds the card's patient key."""
        try:
            with self.conn.begin_nested():
                self.conn.execute(insert(DEC).values(**row))
        except IntegrityError:
            return False
        return True

    # ------------------------------------------------------------------ patient-view reminders
    def add_reminder(self, row: dict[str, Any]) -> None:
        self.conn.execute(insert(REM).values(**row))

    def reminder(self, uuid: str) -> Any | None:
        """The reminder card ``uuid`` names (as :meth:`card`: one index probe per partition)."""
        return self.conn.execute(select(REM).where(REM.c.uuid == uuid)).first()

    def reminder_feedback_for(self, card_uuid: str, patient_key: str) -> Any | None:
        return self.conn.execute(
            select(REMF).where(REMF.c.card_uuid == card_uuid, REMF.c.patient_key == patient_key)
        ).first()

    def add_reminder_feedback(self, row: dict[str, Any]) -> bool:
        """False when the card already has feedback (a repeated post); ``row`` holds the card's patient key."""
        try:
            with self.conn.begin_nested():
                self.conn.execute(insert(REMF).values(**row))
        except IntegrityError:
            return False
        return True
