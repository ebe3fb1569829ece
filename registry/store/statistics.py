"""SQL for the recognition statistics (docs/design.md §1): aggregations over the decision log and the check log, grouped
by day, ordering hospital, issuing hospital or item. The definitions are in ``registry.services.stats``; here they are
put into SQL so the figures reconcile with the logs exactly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, and_, case, func, or_, select

from registry.store.tables import metadata

CHECK = cast(Any, metadata.tables["order_check"])
DEC = cast(Any, metadata.tables["decision"])
AUD = cast(Any, metadata.tables["audit_event"])

RECOGNIZABLE = "recognizable"
DUPLICATE = "same-hospital-duplicate"
BY = {"hospital": "ordering_org", "issuer": "issuer_org", "item": "item_id"}


@dataclass(frozen=True, slots=True)
class StatsFilter:
    start_us: int | None = None
    end_us: int | None = None  # exclusive
    ordering_org: str | None = None
    issuer_org: str | None = None
    item_id: str | None = None
    kind: str | None = None


def _conditions(table: Any, f: StatsFilter, time_column: str) -> list[Any]:
    conds: list[Any] = []
    t = table.c[time_column]
    if f.start_us is not None:
        conds.append(t >= f.start_us)
    if f.end_us is not None:
        conds.append(t < f.end_us)
    if f.ordering_org:
        conds.append(table.c.ordering_org == f.ordering_org)
    if f.issuer_org:
        conds.append(table.c.issuer_org == f.issuer_org)
    if f.item_id:
        conds.append(table.c.item_id == f.item_id)
    if f.kind:
        conds.append(table.c.kind == f.kind)
    return conds


def _cross_hospital() -> Any:
    """A decision on advice about another hospital's result (not on a same-hospital-duplicate card)."""
    return or_(DEC.c.card_status.is_(None), DEC.c.card_status != DUPLICATE)


def _day(column: Any, offset_us: int) -> Any:
    """The local calendar day (days since 1970-01-01 in the region's time zone) of a microsecond timestamp."""
    return func.floor((column + offset_us) / 86_400_000_000)


class StatsQueries:
    def __init__(self, conn: Connection, offset_us: int) -> None:
        self.conn = conn
        self.offset_us = offset_us

    def decision_groups(self, f: StatsFilter, by: str | None) -> list[Any]:
        """Per group (None: one group) the decision figures; money in fen. Decisions on a same-hospital-duplicate
        card are counted apart (``dup_*``) and, by issuer, not at all: the ordering hospital issued nothing to
        another. A recognition whose result was withdrawn by then counts as recognized but saves nothing."""
        duplicate = DEC.c.card_status == DUPLICATE
        cross = _cross_hospital()
        recognized = and_(cross, DEC.c.outcome == "recognized")
        counted = and_(recognized, DEC.c.result_withdrawn.is_(False))
        dup_avoided = and_(duplicate, DEC.c.outcome == "recognized")

        def n(condition: Any) -> Any:
            return func.sum(case((condition, 1), else_=0))

        cols: list[Any] = [
            n(recognized).label("recognized"),
            n(and_(recognized, DEC.c.result_withdrawn.is_(True))).label("recognized_withdrawn"),
            n(and_(cross, DEC.c.outcome == "declined")).label("declined"),
            n(and_(cross, DEC.c.counts_as_refusal.is_(True))).label("refusals"),
            func.count(func.distinct(case((counted, DEC.c.patient_key)))).label("patients"),
            func.sum(case((counted, DEC.c.fee_fen), else_=0)).label("saved_fen"),
            n(dup_avoided).label("dup_avoided"),
            n(and_(duplicate, DEC.c.outcome == "declined")).label("dup_declined"),
            func.sum(case((and_(dup_avoided, DEC.c.result_withdrawn.is_(False)), DEC.c.fee_fen), else_=0)).label(
                "dup_saved_fen"
            ),
        ]
        conds = _conditions(DEC, f, "recorded_us")
        if by == "issuer":
            conds.append(cross)
        return self._grouped(DEC, by, "recorded_us", cols, conds)

    def reasons(self, f: StatsFilter) -> list[Any]:
        """Declines of cross-hospital advice by reason (a declined same-hospital duplicate is no refusal)."""
        return list(
            self.conn.execute(
                select(DEC.c.reason_code, func.count().label("n"))
                .where(*_conditions(DEC, f, "recorded_us"), DEC.c.outcome == "declined", _cross_hospital())
                .group_by(DEC.c.reason_code)
                .order_by(DEC.c.reason_code)
            )
        )

    def check_groups(self, f: StatsFilter, by: str | None) -> list[Any]:
        """Per group: distinct orders checked, those with a recognizable result from another hospital, and those
        with a same-hospital result (a duplicate order). By issuer only the recognizable ones count: the issuer of
        a duplicate is the ordering hospital itself, and an order with no result has no issuer."""
        recognizable = CHECK.c.status == RECOGNIZABLE
        duplicate = CHECK.c.status == DUPLICATE
        cols = [
            func.count(func.distinct(CHECK.c.order_key)).label("checked"),
            func.count(func.distinct(case((recognizable, CHECK.c.order_key)))).label("found"),
            func.count(func.distinct(case((duplicate, CHECK.c.order_key)))).label("duplicates"),
            func.count(func.distinct(case((CHECK.c.sharing_paused.is_(True), CHECK.c.order_key)))).label("paused"),
        ]
        conds = _conditions(CHECK, f, "checked_us")
        if by == "issuer":
            conds.append(recognizable)
        return self._grouped(CHECK, by, "checked_us", cols, conds)

    def _grouped(self, table: Any, by: str | None, time_column: str, cols: list[Any], conds: list[Any]) -> list[Any]:
        if by is None:
            return list(self.conn.execute(select(*cols).where(*conds)))
        key = _day(table.c[time_column], self.offset_us) if by == "day" else table.c[BY[by]]
        stmt = select(key.label("g"), *cols).where(*conds).group_by(key).order_by(key)
        return list(self.conn.execute(stmt))


def break_glass_accesses(conn: Connection, f: StatsFilter) -> list[Any]:
    """Per organization of the requestor: break-glass requests that opened records (audit rows with purpose of use
    BTG and outcome success, one per request) and the distinct patients they opened, in the period."""
    conds: list[Any] = [AUD.c.purpose == "BTG", AUD.c.outcome == "0"]
    if f.start_us is not None:
        conds.append(AUD.c.recorded_us >= f.start_us)
    if f.end_us is not None:
        conds.append(AUD.c.recorded_us < f.end_us)
    if f.ordering_org:
        conds.append(AUD.c.org_id == f.ordering_org)
    stmt = (
        select(
            AUD.c.org_id.label("g"),
            func.count(func.distinct(AUD.c.request_id)).label("accesses"),
            func.count(func.distinct(AUD.c.patient_key)).label("patients"),
        )
        .where(*conds)
        .group_by(AUD.c.org_id)
        .order_by(AUD.c.org_id)
    )
    return list(conn.execute(stmt))
