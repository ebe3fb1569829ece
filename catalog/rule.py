"""The recognition rule (docs/design.md §5): is a prior result recognizable for a new order?

``recognize(order, prior_results, catalog, qualifications, *, now)`` returns a :class:`Decision` value. A prior result
is **recognizable** for an order when all of these hold (numbers as in docs/design.md §5):

1. the order maps to a catalog item — by a standard or regional code, or through the ordering hospital's local
   code map (else ``not-in-catalog``);
2. the result maps to the same item, or to a panel the catalog declares as containing the ordered analyte — and
   then only when that panel result actually carries a value for the analyte (``PriorResult.contains``: a blood count
   without an MCV value does not answer an MCV order, one with no Observations at all answers no analyte order);
3. it is for the same master patient (results failing 2 or 3 are ignored: ``no-prior-result`` if none is left);
4. its status is final, amended, corrected or appended (an ImagingStudy: available) — not registered,
   preliminary, cancelled or entered-in-error (else ``not-final``);
5. the order time lies in the validity window ``[effective, effective + validity_days)``: the window starts at the
   result's ``effective`` instant (inclusive) and ends exactly ``validity_days × 24 h`` later (exclusive). Instants
   are compared as instants, so a result stamped ``+08:00`` and an order stamped ``Z`` compare correctly; a result
   dated after the order is outside the window (else ``expired``). An **imprecise** ``effective`` (a FHIR date or
   dateTime written to the day, month or year: ``2026-12`` is any instant of December 2026) is judged safely, on
   both of its ends: the result counts as *dated after the order* when the **latest** instant it can mean
   (``PriorResult.effective_latest``, 2026-12-31T23:59:59.999999) is after the order, and its window runs from the
   **earliest** instant (``PriorResult.effective``, 2026-12-01T00:00) — so it may start late and always ends early,
   never the other way round. The **last valid day** shown to people ("有效至") is the local date of the last
   instant inside the window, ``valid_until − 1 µs`` (:func:`last_valid_day`): a window ending at
   2026-12-03T00:00+08:00 is valid through 2026-12-02;
6. the result carries the HR mark and its issuing organization held a quality-control qualification for the item
   (or its group) on the result's date — the date of ``effective`` in the catalog's time zone, with the
   qualification's ``valid_from``/``valid_to`` both inclusive; for an imprecise ``effective`` one qualification must
   cover the dates of both its earliest and its latest instant (else ``unqualified-issuer``);
7. some recognition scope of the item covers both hospitals and the issuer's qualification is for that scope: a
   region scope when both belong to the region, ``alliance`` when both belong to one medical alliance
   (else ``out-of-scope``).

Rules 4–6 are about the result alone — may *another* hospital recognize it now, and until when? — and one function
answers that, :func:`assess`: the order check applies it (through :func:`evaluate`) and so does the patient portal's
"互认有效期至", so the two never disagree. Rule 7 depends on the ordering hospital and is the order check's alone.

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
from datetime import UTC, date, datetime, timedelta, tzinfo
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
    effective_latest: datetime | None = None  # rule 5: the latest instant an imprecise effective can mean
    contains: frozenset[str] = frozenset()  # rule 2: analyte item ids whose values a panel result carries

    @property
    def latest(self) -> datetime:
        """The latest instant ``effective`` can mean (itself when it is written to the second or finer)."""
        return self.effective if self.effective_latest is None else self.effective_latest


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
class Standing:
    """Whether another hospital may recognize a result at an instant (rules 4–6), and until when.

    ``status`` is ``recognizable`` or the first of rules 4–6 that fails (``not-final``, ``expired``,
    ``unqualified-issuer``); ``scopes`` are the scopes the issuer was qualified in for the item on the result date.
    """

    status: Status
    valid_until: datetime
    detail: str = ""
    scopes: frozenset[str] = frozenset()

    @property
    def recognizable(self) -> bool:
        return self.status is Status.RECOGNIZABLE


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


END_OF_WINDOWS = datetime(9999, 12, 30, tzinfo=UTC)
"""No validity window runs past this instant: a result dated near the end of the calendar still has a window that
can be computed and shown in any time zone (its result is dated after any order anyway)."""


def window_end(earliest: datetime, days: int) -> datetime:
    """Rule 5: the exclusive end of the window ``[earliest, earliest + days)``, at most :data:`END_OF_WINDOWS`."""
    if timedelta(days=days) >= END_OF_WINDOWS - earliest:
        return END_OF_WINDOWS
    return earliest + timedelta(days=days)


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


def last_valid_day(valid_until: datetime, tz: tzinfo) -> date:
    """Rule 5: the last calendar day (in ``tz``, the catalog's time zone) with an instant inside the window
    ``[effective, valid_until)`` — what "有效至" shows. A window ending at 2026-12-03T00:00+08:00 is valid through
    2026-12-02; one ending at 2026-12-03T08:00+08:00 through 2026-12-03."""
    return (_aware(valid_until, "valid_until") - timedelta(microseconds=1)).astimezone(tz).date()


def assess(
    result: PriorResult,
    item: Item,
    catalog: Catalog,
    qualifications: Sequence[Qualification],
    *,
    now: datetime,
) -> Standing:
    """Rules 4–6 for one result answering ``item`` (whose validity window applies): may another hospital recognize it
    at ``now``, and until when? The one function for this question — the order check and the portal both ask it."""
    now = _aware(now, "now")
    earliest = _aware(result.effective, f"{result.ref} effective")
    latest = _aware(result.latest, f"{result.ref} effective_latest")
    if latest < earliest:
        raise InvalidFactError(f"{result.ref}: the latest effective instant is before the earliest")
    valid_until = window_end(earliest, item.validity.days)
    if result.status not in FINAL_STATUSES:
        return Standing(Status.NOT_FINAL, valid_until, f"status is {result.status.value}")
    if now < latest:
        return Standing(Status.EXPIRED, valid_until, "result is dated after the order")
    if now >= valid_until:
        return Standing(
            Status.EXPIRED, valid_until, f"validity of {item.validity.days} days ended {valid_until.isoformat()}"
        )
    if not result.hr_mark:
        return Standing(Status.UNQUALIFIED_ISSUER, valid_until, "result does not carry the HR mark")
    days = sorted({earliest.astimezone(catalog.timezone).date(), latest.astimezone(catalog.timezone).date()})
    qualified = [q for q in qualifications if q.org_id == result.issuer.id and all(q.covers(item, d) for d in days)]
    if not qualified:
        on = " to ".join(str(d) for d in days)
        return Standing(
            Status.UNQUALIFIED_ISSUER, valid_until, f"issuer {result.issuer.id} not qualified for {item.id} on {on}"
        )
    return Standing(Status.RECOGNIZABLE, valid_until, "", frozenset(q.scope for q in qualified))


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
    standing = assess(result, order_item, catalog, qualifications, now=now)

    def ev(status: Status, detail: str, scope: str | None = None) -> Evaluation:
        return Evaluation(result, result_item, status, standing.valid_until, scope, detail)

    if standing.status in (Status.NOT_FINAL, Status.EXPIRED):
        return ev(standing.status, standing.detail)
    if result.issuer.id == order.ordering_org.id:
        return ev(Status.SAME_HOSPITAL_DUPLICATE, "same hospital, within the validity window")
    if not standing.recognizable:
        return ev(standing.status, standing.detail)
    scopes = _shared_scopes(order_item, order.ordering_org, result.issuer) & standing.scopes
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
        if result_item.id != order_item.id and order_item.id not in result.contains:
            continue  # rule 2: a panel answers for an analyte only when it carries the analyte's value
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
