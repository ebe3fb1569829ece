"""The order check's first reads in one round trip (registry.store.compiled.all_together): the configuration
generation, whether the patient is in the calling hospital's care context, their index rows for the items ordered,
their sharing projection, and the two the check would ask next — which of the patient's reports hold a sensitive
result, and the member rows of the panel reports found. Each is a statement the check would otherwise run on its own,
one after another (the generation first); what they answer is only a fact for the caller — the policy still decides
on it — and the caller uses the rows only for the patient, items and window it then finds it is asking about."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, select

from registry.store.compiled import Compiled, all_together, one_of
from registry.store.config_generation import CURRENT_GENERATION, RECOGNITION
from registry.store.consent import SHARING_ROWS, SharingRows
from registry.store.recognition import RESULTS_FOR, RIX, members_of
from registry.store.resource_sql import CARE_CONTEXT

# the reports of the patient holding a sensitive result (bounded by the patient's own rows, ix_result_lookup)
_SENSITIVE_REPORTS = Compiled(
    lambda d: select(RIX.c.report_id)
    .where(RIX.c.patient_key == bindparam("key"), one_of(RIX.c.item_id, "sensitive", d),
           RIX.c.report_id.is_not(None))
    .distinct()
)  # fmt: skip
# the Observation rows of every DiagnosticReport among the rows RESULTS_FOR finds (a panel's values)
_MEMBERS = Compiled(
    lambda d: members_of(
        RIX.c.report_id.in_(
            select(RIX.c.report_id).where(
                RIX.c.patient_key == bindparam("key"), one_of(RIX.c.item_id, "items", d),
                RIX.c.effective_us >= bindparam("since"), RIX.c.res_type == "DiagnosticReport",
            ).scalar_subquery()))
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class CheckReads:
    generation: int
    patient_key: str
    items: tuple[str, ...]
    since_us: int
    org_id: str | None
    in_care: bool | None  # None: not asked (no calling hospital)
    results: Sequence[Any]
    sharing: SharingRows
    sensitive_reports: frozenset[str]  # of the patient's reports, those holding a result of a sensitive item
    members: Sequence[Any]  # the Observation rows of the DiagnosticReports among ``results``


def read_ahead(
    conn: Connection,
    patient_key: str,
    org_id: str | None,
    items: Sequence[str],
    since_us: int,
    sensitive_items: Sequence[str],
) -> CheckReads:
    """The reads for ``patient_key`` (the care context only with a calling hospital ``org_id``)."""
    queries = ahead_queries(patient_key, org_id, items, since_us, sensitive_items)
    return reads_of(all_together(conn, queries), patient_key, org_id, items, since_us)


def ahead_queries(
    patient_key: str, org_id: str | None, items: Sequence[str], since_us: int, sensitive_items: Sequence[str]
) -> list[tuple[Compiled, Mapping[str, Any]]]:
    """The statements :func:`read_ahead` sends (a standby may answer them: ``registry.store.replica``)."""
    wanted = list(items)
    queries: list[tuple[Compiled, Mapping[str, Any]]] = [
        (CURRENT_GENERATION, {"name": RECOGNITION}),
        (SHARING_ROWS, {"key": patient_key}),
        (RESULTS_FOR, {"key": patient_key, "items": wanted, "since": since_us}),
        (_SENSITIVE_REPORTS, {"key": patient_key, "sensitive": list(sensitive_items)}),
        (_MEMBERS, {"key": patient_key, "items": wanted, "since": since_us}),
    ]
    if org_id:
        queries.append((CARE_CONTEXT, {"org": org_id, "key": patient_key}))
    return queries


def reads_of(
    found: Sequence[Sequence[Any]], patient_key: str, org_id: str | None, items: Sequence[str], since_us: int
) -> CheckReads:
    """What the statements of :func:`ahead_queries` answered."""
    generation = int(found[0][0].generation) if found[0] else 0
    in_care = bool(found[5]) if org_id else None
    sensitive = frozenset(r.report_id for r in found[3])
    return CheckReads(generation, patient_key, tuple(items), since_us, org_id, in_care, list(found[2]),
                      SharingRows.of_rows(found[1]), sensitive, list(found[4]))  # fmt: skip
