"""Recognition statistics for regulators and managers (docs/design.md §1): orders checked, recognizable found,
recognized, declined by reason (98 and 99 shown but not counted as refusals), recognition rate, patients who benefited,
money saved — and, apart from them, duplicate orders — overall and by day, ordering hospital, issuing hospital and item,
for a period and filters.

Definitions (so the numbers reconcile exactly with the check and decision logs):

- *orders checked*: distinct orders (ordering hospital, patient, draft order, item) that were checked — an order seen
  by ``order-select`` and again by ``order-sign`` counts once;
- *recognizable found*: those of them for which a recognizable result **from another hospital** was found;
- *recognized* / *declined*: decisions recorded in the period (one per card) on advice about another hospital's
  result;
- *refusals*: declines with a reason that counts (01–08);
- *recognition rate*: recognized / (recognized + refusals);
- *patients benefited*: distinct patients with at least one recognition that saved money (below);
- *money saved*: the sum of the catalog fees of the recognized items — except a recognition whose result was no
  longer recognizable when the decision arrived (withdrawn, cancelled or deleted since the card was issued): that
  one is still *recognized* (and in the rate: the clinician accepted advice that was right when given) and counted as
  *recognized, result withdrawn* (``recognized_withdrawn_result``), but saves nothing and benefits no patient — the
  test it avoided rests on a void result;
- *duplicate orders* (docs/design.md §5: a same-hospital repeat within the window is a duplicate order, not a
  recognition) are their own figures and never in the ones above: *duplicates found* (orders for which the ordering
  hospital's own result was found), *duplicates avoided* / *duplicates declined* (decisions on such cards), and
  *duplicate money saved* (the fees of the repeats avoided, withdrawn results excepted). By issuing hospital there
  are no duplicates: a hospital is never the issuer of a recognition of its own result.

- *sharing paused* (``sharing_paused``): orders checked for which earlier results existed but were withheld because
  the patient paused sharing with the ordering hospital (docs/design.md §6 consent; the order screen said "患者已限制
  共享") — the repeats the patient's choice costs; not given by issuing hospital.

- *break-glass accesses*: requests that opened a patient's records outside the care context with a reason
  (audited with purpose of use BTG, docs/design.md §6), one per request, with the distinct patients opened — by the
  requestor's hospital (a hospital sees its own).

Every breakdown carries the same figures, and lists every hospital or item with checks or decisions in the period
(``orders_checked`` and the duplicates are not given by issuing hospital: an order without a result has no issuer).
The CSV export carries the same numbers as the JSON summary.
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
from registry.store.recognition import RecognitionStore
from registry.store.repository import UnitOfWork
from registry.store.statistics import StatsFilter, StatsQueries, break_glass_accesses


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
            groups = {by: _merge(q.decision_groups(f, by), q.check_groups(f, by)) for by in BREAKDOWNS}
            glass = break_glass_accesses(repo.conn, f)
            orgs = RecognitionStore(repo.conn).organizations(
                {k for by in ("hospital", "issuer") for k in groups[by] if k} | {r.g for r in glass if r.g}
            )

        def name(by: str, key: Any) -> str | None:
            if by == "item":
                return self.catalog.item(key).name_zh if key in self.catalog else key
            org = orgs.get(key or "")
            return org.name if org is not None else key

        out: dict[str, Any] = {
            "period": {"start": period.start.isoformat() if period.start else None,
                       "end": period.end.isoformat() if period.end else None},
            "filters": {"hospital": f.ordering_org, "issuer": f.issuer_org, "item": f.item_id, "kind": f.kind},
            **_figures(total, checks),
            "declined_by_reason": [
                {"code": r.code, "display": r.display_zh, "counts_as_refusal": r.counts_as_nonrecognition,
                 "count": reasons.get(r.code, 0)} for r in REASONS
            ],
        }  # fmt: skip
        out["by_day"] = [
            {"day": (EPOCH.date() + timedelta(days=int(day))).isoformat(), **_figures(d, c)}
            for day, (d, c) in groups["day"].items()
        ]
        for by in ("hospital", "issuer", "item"):
            out[f"by_{by}"] = [
                {by: key, "name": name(by, key), **_figures(d, c, issuer=by == "issuer")}
                for key, (d, c) in groups[by].items()
            ]
        # break-glass: records opened outside the care context, with a reason (policy.purpose)
        out["break_glass_accesses"] = sum(int(r.accesses) for r in glass)
        out["break_glass_by_hospital"] = [
            {"hospital": r.g, "name": name("hospital", r.g), "accesses": int(r.accesses), "patients": int(r.patients)}
            for r in glass
        ]
        return out

    def export_csv(self, principal: Principal, period: Period, **filters: str | None) -> str:
        """The summary as CSV: one section per breakdown, the same numbers as the JSON summary (the columns after
        ``money_saved_cny`` were added later; earlier columns keep their places)."""
        s = self.summary(principal, period, **filters)
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(["section", "key", "name", *CSV_FIGURES])

        def row(section: str, key: Any, name: Any, figures: dict[str, Any]) -> None:
            cells = [figures.get(k) for k in CSV_FIGURES]
            w.writerow([section, key if key is not None else "", name or "", *("" if c is None else c for c in cells)])

        row("total", "", "", s)
        for d in s["by_day"]:
            row("day", d["day"], "", d)
        for section in ("hospital", "issuer", "item"):
            for g in s[f"by_{section}"]:
                row(section, g[section], g["name"], g)
        for g in s["break_glass_by_hospital"]:
            w.writerow(["break-glass", g["hospital"] or "", g["name"] or "", g["accesses"], g["patients"]])
        for r in s["declined_by_reason"]:
            row("reason", r["code"], r["display"],
                {"declined": r["count"], "refusals": r["count"] if r["counts_as_refusal"] else 0})  # fmt: skip
        return out.getvalue()


BREAKDOWNS = ("day", "hospital", "issuer", "item")
CSV_FIGURES = (
    "orders_checked", "recognizable_found", "recognized", "declined", "refusals", "recognition_rate",
    "patients_benefited", "money_saved_cny", "duplicates_found", "duplicates_avoided", "duplicates_declined",
    "duplicate_money_saved_cny", "recognized_withdrawn_result", "sharing_paused",
)  # fmt: skip


def _merge(decisions: list[Any], checks: list[Any]) -> dict[Any, tuple[Any, Any]]:
    """Decision and check rows of one breakdown by group key: every key that has either (a hospital with checks but
    no decisions is listed), in key order (no key last)."""
    d = {r.g: r for r in decisions}
    c = {r.g: r for r in checks}
    keys = sorted(set(d) | set(c), key=lambda k: (k is None, k if isinstance(k, str) else "", k or 0))
    return {k: (d.get(k), c.get(k)) for k in keys}


def _figures(d: Any | None, c: Any | None, *, issuer: bool = False) -> dict[str, Any]:
    """The figures of one group from its decision row ``d`` and check row ``c`` (either may be missing)."""

    def n(row: Any | None, name: str) -> int:
        return int(getattr(row, name) or 0) if row is not None else 0

    rec, ref = n(d, "recognized"), n(d, "refusals")
    out: dict[str, Any] = {}
    if not issuer:
        out["orders_checked"] = n(c, "checked")
    out["recognizable_found"] = n(c, "found")
    out |= {
        "recognized": rec, "declined": n(d, "declined"), "refusals": ref, "recognition_rate": _rate(rec, ref),
        "patients_benefited": n(d, "patients"), "money_saved_cny": _yuan(n(d, "saved_fen")),
        "recognized_withdrawn_result": n(d, "recognized_withdrawn"),
    }  # fmt: skip
    if not issuer:
        out |= {
            "duplicates_found": n(c, "duplicates"), "duplicates_avoided": n(d, "dup_avoided"),
            "duplicates_declined": n(d, "dup_declined"), "duplicate_money_saved_cny": _yuan(n(d, "dup_saved_fen")),
            "sharing_paused": n(c, "paused"),
        }  # fmt: skip
    return out
