"""What the pages show, as plain values: a report with its observations or study, a trend, who viewed the
records, the patient's card."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from catalog import Item, Kind

ABNORMAL = frozenset({"H", "HH", "L", "LL", "A", "AA", "<", ">", "POS", "DET", "R", "HU", "LU"})
PAGE = 100
MAX_PAGES = 20


@dataclass(frozen=True, slots=True)
class ObservationView:
    id: str
    name: str
    item: Item | None
    value: str
    numeric: float | None
    unit: str
    ucum: str | None
    low: float | None
    high: float | None
    range_text: str
    flags: tuple[str, ...]
    status: str
    effective: datetime | None
    org_id: str | None
    note: str

    @property
    def abnormal(self) -> bool:
        return bool(set(self.flags) & ABNORMAL)


@dataclass(frozen=True, slots=True)
class StudyView:
    uid: str
    modalities: tuple[str, ...]
    body_parts: tuple[str, ...]
    series: int | None
    instances: int | None
    description: str


@dataclass(frozen=True, slots=True)
class ReportView:
    type: str
    id: str
    title: str
    item: Item | None
    kind: Kind
    org_id: str | None
    org_name: str
    effective: datetime | None
    issued: datetime | None
    status: str
    hr_mark: str | None  # as the result index holds it: the mark that counts
    valid_until: datetime | None  # set only while the report is recognizable by other hospitals now
    observations: tuple[ObservationView, ...] = ()
    conclusion: str = ""
    study: StudyView | None = None
    valid_through: date | None = None  # the last valid day ("互认有效期至"), in the catalog's time zone
    expired: bool = False  # it was recognizable, and its window has ended

    @property
    def corrected(self) -> bool:
        return self.status in ("corrected", "amended")

    @property
    def abnormal(self) -> int:
        return sum(o.abnormal for o in self.observations)


@dataclass(frozen=True, slots=True)
class TrendPoint:
    when: datetime
    value: float
    text: str
    org_name: str
    flags: tuple[str, ...]
    observation_id: str


@dataclass(frozen=True, slots=True)
class Trend:
    item: Item
    unit: str
    points: tuple[TrendPoint, ...]
    low: float | None
    high: float | None
    other_units: int  # points left out because they were reported in another unit


@dataclass(frozen=True, slots=True)
class AccessView:
    when: datetime
    who: str
    kind: str
    org_name: str
    what: str  # the audit row's interaction and resource type, e.g. "search-type DiagnosticReport"
    outcome: str
    interaction: str = ""
    resource_type: str = ""
    purpose: str | None = None  # BTG: break-glass
    purpose_reason: str | None = None
    resource_id: str = ""  # for CDS Hooks rows: the service (hr-order-select, hr-patient-view…)
    detail: str = ""  # the audit row's note, e.g. "decision recognized on card …"

    @property
    def break_glass(self) -> bool:
        return self.purpose == "BTG"


@dataclass(frozen=True, slots=True)
class SentNotification:
    """A notification the registry sent the patient (a new report, a correction), as "who viewed my records" lists
    it."""

    when: datetime
    channel: str  # sms, push
    about: str  # what it told the patient, in the words it was sent with
    status: str = "sent"


@dataclass(frozen=True, slots=True)
class PatientCard:
    name: str  # shown to the patient only
    national_id_masked: str
    gender: str
    birth_date: str
    mrns: tuple[tuple[str, str], ...]  # (organization name, MRN)


@dataclass
class Found:
    matches: list[dict[str, Any]] = field(default_factory=list)
    included: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


def decimal_value(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        return float(Decimal(str(value)))
    except (InvalidOperation, ValueError):
        return None


def quantity_text(q: Mapping[str, Any]) -> tuple[str, str, str | None, float | None]:
    value = q.get("value")
    comparator = q.get("comparator") or ""
    unit = str(q.get("unit") or q.get("code") or "")
    number = decimal_value(value)
    return f"{comparator}{value}" if value is not None else "", unit, q.get("code"), number
