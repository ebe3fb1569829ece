"""Recognition statistics for regulators and managers (DESIGN.md §1): orders checked, recognizable found, recognized,
declined by reason (98 and 99 shown but not counted as refusals), recognition rate, patients who benefited, money
saved — overall and by day, ordering hospital, issuing hospital and item, for a period and filters.

Definitions (so the numbers reconcile exactly with the decision log):

- *orders checked*: distinct orders (ordering hospital, patient, draft order, item) that were checked — an order seen
  by ``order-select`` and again by ``order-sign`` counts once;
- *recognizable found*: those of them for which a recognizable or same-hospital result was found;
- *recognized* / *declined*: decisions recorded in the period (one per card);
- *refusals*: declines with a reason that counts (01–08);
- *recognition rate*: recognized / (recognized + refusals);
- *patients benefited*: distinct patients with at least one recognition;
- *money saved*: the sum of the catalog fees of the recognized items.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from catalog import REASONS, Catalog
from registry.auth import Principal
from registry.errors import BadRequestError
from registry.fhir.extract import EPOCH, to_us
from registry.services import policy
from registry.store.recognition import RecognitionStore, StatsFilter, StatsQueries
from registry.store.repository import UnitOfWork


@dataclass(frozen=True, slots=True)
class Period:
    start: date | None
    end: date | None  # inclusive


def parse_period(start: str | None, end: str | None) -> Period:
    """The statistics period from ``start`` / ``end`` query values (``YYYY-MM-DD``, both inclusive, either open)."""
    try:
        return Period(date.fromisoformat(start) if start else None, date.fromisoformat(end) if end else None)
    except ValueError:
        raise BadRequestError("start and end are dates (YYYY-MM-DD)") from None


def _rate(recognized: int, refusals: int) -> float | None:
    total = recognized + refusals
    return round(recognized / total, 4) if total else None


def _yuan(fen: int | None) -> str:
    return str((Decimal(int(fen or 0)) / 100).quantize(Decimal("0.01")))


class Statistics:
    def __init__(self, uow: UnitOfWork, catalog: Catalog, local_tz: tzinfo) -> None:
        self.uow = uow
        self.catalog = catalog
        self.local_tz = local_tz
        offset = datetime(2000, 1, 1, tzinfo=local_tz).utcoffset() or timedelta(0)
        self.offset_us = int(offset.total_seconds() * 1_000_000)

    def _filter(self, period: Period, **kw: str | None) -> StatsFilter:
        kind = kw.get("kind")
        if kind not in (None, "", "lab", "imaging"):
            raise BadRequestError("kind must be lab or imaging")
        item = kw.get("item") or None
        if item is not None and item not in self.catalog:
            raise BadRequestError(f"unknown catalog item {item!r}")
        if period.start and period.end and period.end < period.start:
            raise BadRequestError("the period ends before it starts")
        start = to_us(datetime.combine(period.start, time(), tzinfo=self.local_tz)) if period.start else None
        end = (
            to_us(datetime.combine(period.end + timedelta(days=1), time(), tzinfo=self.local_tz))
            if period.end
            else None
        )
        return StatsFilter(start, end, kw.get("hospital") or None, kw.get("issuer") or None, item, kind or None)

    @staticmethod
    def _allowed(principal: Principal, f: StatsFilter) -> StatsFilter:
        """Admins see the region; a hospital system sees its own orders (policy.surfaces)."""
        own = policy.own_organization(principal, f.ordering_org, "statistics")
        return StatsFilter(f.start_us, f.end_us, own, f.issuer_org, f.item_id, f.kind)

    def summary(self, principal: Principal, period: Period, **filters: str | None) -> dict[str, Any]:
        f = self._allowed(principal, self._filter(period, **filters))
        with self.uow.begin(audit_only=True) as repo:
            q = StatsQueries(repo.conn, self.offset_us)
            (total,) = q.decision_groups(f, None)
            (checks,) = q.check_groups(f, None)
            reasons = {r.reason_code: int(r.n) for r in q.reasons(f)}
            days = {int(r.g): r for r in q.decision_groups(f, "day")}
            day_checks = {int(r.g): r for r in q.check_groups(f, "day")}
            hospitals = q.decision_groups(f, "hospital")
            issuers = q.decision_groups(f, "issuer")
            items = q.decision_groups(f, "item")
            orgs = RecognitionStore(repo.conn).organizations(
                {r.g for r in hospitals if r.g} | {r.g for r in issuers if r.g}
            )
        recognized, refusals = int(total.recognized or 0), int(total.refusals or 0)

        def org_name(org_id: str | None) -> str | None:
            org = orgs.get(org_id or "")
            return org.name if org is not None else org_id

        by_day = []
        for day in sorted(set(days) | set(day_checks)):
            d, c = days.get(day), day_checks.get(day)
            rec, ref = int(d.recognized or 0) if d else 0, int(d.refusals or 0) if d else 0
            by_day.append({
                "day": (EPOCH.date() + timedelta(days=day)).isoformat(),
                "orders_checked": int(c.checked) if c else 0, "recognizable_found": int(c.found) if c else 0,
                "recognized": rec, "declined": int(d.declined or 0) if d else 0, "refusals": ref,
                "recognition_rate": _rate(rec, ref), "money_saved_cny": _yuan(d.saved_fen if d else 0),
            })  # fmt: skip
        return {
            "period": {"start": period.start.isoformat() if period.start else None,
                       "end": period.end.isoformat() if period.end else None},
            "filters": {"hospital": f.ordering_org, "issuer": f.issuer_org, "item": f.item_id, "kind": f.kind},
            "orders_checked": int(checks.checked or 0),
            "recognizable_found": int(checks.found or 0),
            "recognized": recognized,
            "declined": int(total.declined or 0),
            "refusals": refusals,
            "declined_by_reason": [
                {"code": r.code, "display": r.display_zh, "counts_as_refusal": r.counts_as_nonrecognition,
                 "count": reasons.get(r.code, 0)} for r in REASONS
            ],
            "recognition_rate": _rate(recognized, refusals),
            "patients_benefited": int(total.patients or 0),
            "money_saved_cny": _yuan(total.saved_fen),
            "by_day": by_day,
            "by_hospital": [self._group(r, "hospital", org_name(r.g)) for r in hospitals],
            "by_issuer": [self._group(r, "issuer", org_name(r.g)) for r in issuers],
            "by_item": [self._group(r, "item", self.catalog.item(r.g).name_zh if r.g in self.catalog else r.g)
                        for r in items],
        }  # fmt: skip

    @staticmethod
    def _group(row: Any, key: str, name: str | None) -> dict[str, Any]:
        rec, ref = int(row.recognized or 0), int(row.refusals or 0)
        return {
            key: row.g, "name": name, "recognized": rec, "declined": int(row.declined or 0), "refusals": ref,
            "recognition_rate": _rate(rec, ref), "patients_benefited": int(row.patients or 0),
            "money_saved_cny": _yuan(row.saved_fen),
        }  # fmt: skip

    def export_csv(self, principal: Principal, period: Period, **filters: str | None) -> str:
        """The summary as CSV: one section per breakdown, the same numbers as the JSON summary."""
        s = self.summary(principal, period, **filters)
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["section", "key", "name", "orders_checked", "recognizable_found", "recognized", "declined",
                    "refusals", "recognition_rate", "patients_benefited", "money_saved_cny"])  # fmt: skip
        w.writerow(["total", "", "", s["orders_checked"], s["recognizable_found"], s["recognized"], s["declined"],
                    s["refusals"], s["recognition_rate"] if s["recognition_rate"] is not None else "",
                    s["patients_benefited"], s["money_saved_cny"]])  # fmt: skip
        for d in s["by_day"]:
            w.writerow(["day", d["day"], "", d["orders_checked"], d["recognizable_found"], d["recognized"],
                        d["declined"], d["refusals"], d["recognition_rate"] if d["recognition_rate"] is not None
                        else "", "", d["money_saved_cny"]])  # fmt: skip
        for section, key in (("hospital", "by_hospital"), ("issuer", "by_issuer"), ("item", "by_item")):
            for g in s[key]:
                w.writerow([section, g[section], g["name"], "", "", g["recognized"], g["declined"], g["refusals"],
                            g["recognition_rate"] if g["recognition_rate"] is not None else "",
                            g["patients_benefited"], g["money_saved_cny"]])  # fmt: skip
        for r in s["declined_by_reason"]:
            w.writerow(["reason", r["code"], r["display"], "", "", "", r["count"],
                        r["count"] if r["counts_as_refusal"] else 0, "", "", ""])  # fmt: skip
        return out.getvalue()
