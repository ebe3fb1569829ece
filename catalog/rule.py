"""The recognition rule (DESIGN.md §5): is a prior result recognizable for a new order?

``recognize(order, prior_results, catalog, qualifications, *, now)`` returns a :class:`Decision` value. A prior result
is **recognizable** for an order when all of these hold (numbers as in DESIGN.md §5):

1. the order maps to a catalog item — by a standard or regional code, or through the ordering hospital's local
   code map (else ``not-in-catalog``);
2. the result maps to the same item, or to a panel the catalog declares as containing the ordered analyte;
3. it is for the same master patient (results failing 2 or 3 are ignored: ``no-prior-result`` if none is left);
4. its status is final, amended, corrected or appended (an ImagingStudy: available) — not registered,
   preliminary, cancelled or entered-in-error (else ``not-final``);
5. the order time lies in the validity window ``[effective, effective + validity_days)``: the window starts at the
   result's ``effective`` instant (inclusive) and ends exactly ``validity_days × 24 h`` later (exclusive). Instants
   are compared as instants, so a result stamped ``+08:00`` and an order stamped ``Z`` compare correctly; a result
   dated after the order is outside the window (else ``expired``);
6. the result carries the HR mark and its issuing organization held a quality-control qualification for the item
   (or its group) on the result's date — the date of ``effective`` in the catalog's time zone, with the
   qualification's ``valid_from``/``valid_to`` both inclusive (else ``unqualified-issuer``);
7. some recognition scope of the item covers both hospitals and the issuer's qualification is for that scope: a
   region scope when both belong to the region, ``alliance`` when both belong to one medical alliance
   (else ``out-of-scope``).

A result that passes 1–5 and comes from the ordering hospital itself is a **same-hospital duplicate** (rules 6–7 do
not apply to a hospital's own result). Among all results passing, the most recent (latest ``effective``; ties by
reference) is the decision's ``best`` candidate, and its kind sets the status. When none passes, the status is the
failure of the result that got furthest through the rule (ties to the most recent), so the clinician is told the
nearest miss. The decision never depends on the order of ``prior_results``.

The clinician always has the last word (以接诊医师判断为标准): a decision is advice, never a block.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from catalog.codes import Coding
from catalog.errors import InvalidFactError
from catalog.model import ALLIANCE_PREFIX, Catalog, CodeMap, Item, OrgFacts


class ResultStatus(StrEnum):
    """FHIR R4 DiagnosticReport/Observation status, plus ImagingStudy's ``available``."""

    REGISTERED = "registered"
    PARTIAL = "partial"
    PRELIMINARY = "preliminary"
    FINAL = "final"
    AMENDED = "amended"
    CORRECTED = "corrected"
    APPENDED = "appended"
    CANCELLED = "cancelled"
    ENTERED_IN_ERROR = "entered-in-error"
    UNKNOWN = "unknown"
    AVAILABLE = "available"


FINAL_STATUSES = frozenset(
    {
        ResultStatus.FINAL,
        ResultStatus.AMENDED,
        ResultStatus.CORRECTED,
        ResultStatus.APPENDED,
        ResultStatus.AVAILABLE,
    }
)
"""Rule 4: statuses whose result may be recognized."""


class Status(StrEnum):
    """What the decision says, in the order the rule checks (the failures)."""

    RECOGNIZABLE = "recognizable"
    SAME_HOSPITAL_DUPLICATE = "same-hospital-duplicate"
    NOT_IN_CATALOG = "not-in-catalog"
    NO_PRIOR_RESULT = "no-prior-result"
    NOT_FINAL = "not-final"
    EXPIRED = "expired"
    UNQUALIFIED_ISSUER = "unqualified-issuer"
    OUT_OF_SCOPE = "out-of-scope"


_PROGRESS = {
    Status.NOT_FINAL: 1,
    Status.EXPIRED: 2,
    Status.UNQUALIFIED_ISSUER: 3,
    Status.OUT_OF_SCOPE: 4,
}
"""How far through the rule a failing result got; the furthest one names the decision's status."""


@dataclass(frozen=True, slots=True)
class Order:
    """A clinician's new (draft) order: what is ordered, for whom, where, with which local code map."""

    codes: tuple[Coding, ...]
    patient_key: str
    ordering_org: OrgFacts
    code_map: CodeMap | None = None
    ref: str | None = None  # e.g. "ServiceRequest/draft-1"


@dataclass(frozen=True, slots=True)
class PriorResult:
    """A result already in the registry, reduced to the facts the rule needs."""

    ref: str  # e.g. "DiagnosticReport/123"
    patient_key: str
    codes: tuple[Coding, ...]
    status: ResultStatus
    effective: datetime
    issuer: OrgFacts
    hr_mark: bool
    code_map: CodeMap | None = None  # the issuing hospital's local map, for results sent with local codes


@dataclass(frozen=True, slots=True)
class Qualification:
    """Quality-control (EQA) qualification of an organization for an item or a whole group, in a scope."""

    org_id: str
    scope: str
    valid_from: date
    valid_to: date | None = None  # inclusive; None = open-ended
    item_id: str | None = None
    group: str | None = None

    def covers(self, item: Item, on: date) -> bool:
        if self.item_id is not None and self.item_id != item.id:
            return False
        if self.item_id is None and self.group != item.group:
            return False
        return self.valid_from <= on and (self.valid_to is None or on <= self.valid_to)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """How one prior result fared against the rule."""

    result: PriorResult
    item: Item
    status: Status
    valid_until: datetime
    scope: str | None = None  # the scope the recognition rests on (rule 7)
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status in (Status.RECOGNIZABLE, Status.SAME_HOSPITAL_DUPLICATE)


@dataclass(frozen=True, slots=True)
class Decision:
    """The rule's answer for one order.

    ``candidates`` are every passing result, most recent first (``best`` is the first); ``evaluations`` every result
    that maps to the ordered item for this patient, most recent first, whatever its outcome.
    """

    status: Status
    item: Item | None
    candidates: tuple[Evaluation, ...] = ()
    evaluations: tuple[Evaluation, ...] = ()
    detail: str = ""

    @property
    def best(self) -> Evaluation | None:
        return self.candidates[0] if self.candidates else None

    @property
    def valid_until(self) -> datetime | None:
        return self.candidates[0].valid_until if self.candidates else None


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidFactError(f"{what} must carry a time zone offset, got naive {value.isoformat()}")
    return value


def _recency_key(e: Evaluation) -> tuple[datetime, str]:
    return (e.result.effective, e.result.ref)


def _shared_scopes(item: Item, a: OrgFacts, b: OrgFacts) -> set[str]:
    out: set[str] = set()
    for scope in item.scopes:
        if scope == "alliance":
            alliances_a = {r for r in a.regions if r.startswith(ALLIANCE_PREFIX)}
            if alliances_a & b.regions:
                out.add(scope)
        elif scope in a.regions and scope in b.regions:
            out.add(scope)
    return out


def evaluate(
    order: Order,
    order_item: Item,
    result: PriorResult,
    result_item: Item,
    catalog: Catalog,
    qualifications: Sequence[Qualification],
    now: datetime,
) -> Evaluation:
    """Apply rules 4–7 to one result already known to match the order's item and patient (rules 1–3)."""
    effective = _aware(result.effective, f"{result.ref} effective")
    valid_until = effective + timedelta(days=order_item.validity.days)

    def ev(status: Status, detail: str, scope: str | None = None) -> Evaluation:
        return Evaluation(result, result_item, status, valid_until, scope, detail)

    if result.status not in FINAL_STATUSES:
        return ev(Status.NOT_FINAL, f"status is {result.status.value}")
    if not effective <= now < valid_until:
        if now < effective:
            return ev(Status.EXPIRED, "result is dated after the order")
        return ev(Status.EXPIRED, f"validity of {order_item.validity.days} days ended {valid_until.isoformat()}")
    if result.issuer.id == order.ordering_org.id:
        return ev(Status.SAME_HOSPITAL_DUPLICATE, "same hospital, within the validity window")
    if not result.hr_mark:
        return ev(Status.UNQUALIFIED_ISSUER, "result does not carry the HR mark")
    on = effective.astimezone(catalog.timezone).date()
    qualified = [q for q in qualifications if q.org_id == result.issuer.id and q.covers(order_item, on)]
    if not qualified:
        return ev(Status.UNQUALIFIED_ISSUER, f"issuer {result.issuer.id} not qualified for {order_item.id} on {on}")
    scopes = _shared_scopes(order_item, order.ordering_org, result.issuer) & {q.scope for q in qualified}
    if not scopes:
        return ev(Status.OUT_OF_SCOPE, "no recognition scope of the item covers both hospitals")
    # Prefer the narrowest scope for the record: an alliance, then the catalog's own region, then wider ones.
    scope = sorted(scopes, key=lambda s: (s != "alliance", s != catalog.region, s))[0]
    return ev(Status.RECOGNIZABLE, f"recognizable under scope {scope}", scope)


def recognize(
    order: Order,
    prior_results: Iterable[PriorResult],
    catalog: Catalog,
    qualifications: Sequence[Qualification] = (),
    *,
    now: datetime,
) -> Decision:
    """Decide whether any prior result is recognizable for ``order`` at instant ``now`` (module docstring)."""
    now = _aware(now, "now")
    order_item = catalog.resolve(order.codes, order.code_map)
    if order_item is None:
        shown = ", ".join(str(c) for c in order.codes) or "no code"
        return Decision(Status.NOT_IN_CATALOG, None, detail=f"order code(s) {shown} map to no catalog item")

    evaluations: list[Evaluation] = []
    for result in prior_results:
        if result.patient_key != order.patient_key:
            continue
        result_item = catalog.resolve(result.codes, result.code_map)
        if result_item is None or not catalog.satisfies(result_item.id, order_item.id):
            continue
        evaluations.append(evaluate(order, order_item, result, result_item, catalog, qualifications, now))
    evaluations.sort(key=_recency_key, reverse=True)

    passed = tuple(e for e in evaluations if e.passed)
    if passed:
        best = passed[0]
        return Decision(best.status, order_item, passed, tuple(evaluations), best.detail)
    if not evaluations:
        return Decision(Status.NO_PRIOR_RESULT, order_item, (), (), "no prior result for this item")
    nearest = max(evaluations, key=lambda e: (_PROGRESS[e.status], _recency_key(e)))
    return Decision(nearest.status, order_item, (), tuple(evaluations), nearest.detail)
