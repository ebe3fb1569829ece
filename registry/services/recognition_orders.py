"""What the order check works with and answers — draft orders, the prior results shown as candidates, the checked
orders, the patient-view reminder, how the caller names the patient — and the check log's rows made from them
(``registry.services.recognition``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from catalog import Catalog, Coding, Decision, Evaluation, Item, Status
from registry.auth import Principal
from registry.fhir.extract import to_us
from registry.store.recognition import Org


@dataclass(frozen=True, slots=True)
class DraftOrder:
    """A draft order as the order screen sends it: its reference (``ServiceRequest/<id>``) and codes."""

    ref: str | None
    codes: tuple[Coding, ...]
    display: str | None = None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A recognizable (or same-hospital) prior result, as the clinician is shown it."""

    result_ref: str
    report_ref: str | None
    issuer: Org | None
    item: Item
    effective: datetime
    valid_until: datetime
    value_text: str | None
    interpretation: str | None
    hr_mark: str | None
    same_hospital: bool
    members: tuple[tuple[Item, str | None, str | None], ...] = ()  # a panel's analytes: (item, value, flag)


@dataclass(frozen=True, slots=True)
class CheckedOrder:
    order: DraftOrder
    decision: Decision
    candidates: tuple[Candidate, ...] = ()
    card_uuid: str | None = None
    suggestion_uuid: str | None = None
    restricted: bool = False  # earlier results exist but the patient paused sharing them with this hospital

    @property
    def item(self) -> Item | None:
        return self.decision.item


@dataclass(frozen=True, slots=True)
class Reminder:
    """The patient-view reminder: the results it lists, and its card's uuid (None when there is nothing to list)."""

    card_uuid: str | None
    results: list[CheckedOrder]
    restricted: bool = False  # results from other hospitals exist but the patient paused sharing them


@dataclass(slots=True)
class PatientQuery:
    """How the caller names the patient: a national identifier, a hospital identifier (MRN), or a registry Patient."""

    identifiers: list[tuple[str, str]] = field(default_factory=list)
    patient_id: str | None = None


def log_rows(
    principal: Principal,
    key: str,
    checked: Sequence[CheckedOrder],
    now: datetime,
    source: str,
    hook_instance: str | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The check log's rows (one per order) and the cards' (one per piece of advice)."""
    cards: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    ordering = principal.org_id
    for c in checked:
        item = c.decision.item
        best = c.candidates[0] if c.candidates else None
        order_key = f"{ordering}|{key}|{c.order.ref or ''}|{item.id if item else ','.join(map(str, c.order.codes))}"
        checks.append({
            "checked": now, "checked_us": to_us(now), "source": source, "hook_instance": hook_instance,
            "order_key": order_key[:300], "client_id": principal.client_id, "ordering_org": ordering,
            "patient_key": key, "item_id": item.id if item else None, "kind": item.kind.value if item else None,
            "status": c.decision.status.value, "issuer_org": best.issuer.id if best and best.issuer else None,
            "card_uuid": c.card_uuid, "sharing_paused": c.restricted,
        })  # fmt: skip
        if c.card_uuid and item is not None:
            cards.append({
                "uuid": c.card_uuid, "issued": now, "source": source, "client_id": principal.client_id,
                "ordering_org": ordering, "patient_key": key, "order_ref": c.order.ref, "item_id": item.id,
                "status": c.decision.status.value, "result_ref": best.result_ref if best else None,
                "issuer_org": best.issuer.id if best and best.issuer else None,
                "suggestion_uuid": c.suggestion_uuid,
            })  # fmt: skip
    return checks, cards


def candidates_of(
    catalog: Catalog,
    decision: Decision,
    by_ref: Mapping[str, Any],
    orgs: Mapping[str, Org],
    members: Mapping[str, Sequence[Any]],
) -> tuple[Candidate, ...]:
    """The prior results the clinician is shown for ``decision``: one per exam, its report's panel values."""
    groups: dict[str, list[tuple[Evaluation, Any]]] = {}
    for ev in decision.candidates:
        row = by_ref[ev.result.ref]
        # the same report reached through its panel, its analytes or its study is shown once
        exam = f"DiagnosticReport/{row.report_id}" if row.report_id else ev.result.ref
        groups.setdefault(exam, []).append((ev, row))
    chosen = [
        next(((ev, row) for ev, row in group if row.res_type == "DiagnosticReport"), group[0])
        for group in groups.values()
    ]
    out: list[Candidate] = []
    for ev, row in chosen:
        panel = tuple(
            (catalog.item(m.item_id), m.value_text, m.interpretation)
            for m in members.get(row.report_id or "", [])
            if m.item_id in catalog
        )
        out.append(
            Candidate(
                result_ref=ev.result.ref,
                report_ref=f"DiagnosticReport/{row.report_id}" if row.report_id else None,
                issuer=orgs.get(row.org_id or ""),
                item=catalog.item(row.item_id),
                effective=ev.result.effective,
                valid_until=ev.valid_until,
                value_text=row.value_text,
                interpretation=row.interpretation,
                hr_mark=row.hr_mark,
                same_hospital=ev.status is Status.SAME_HOSPITAL_DUPLICATE,
                members=panel,
            )
        )
    return tuple(out)
