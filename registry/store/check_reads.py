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


@dataclass(frozen=True, slots=True)
class CheckAsk:
    """What the check reads ahead: for ``patient_key``, the index rows of ``items`` since ``since_us``, and the care
    context only with a calling hospital ``org_id``."""

    patient_key: str
    org_id: str | None
    items: tuple[str, ...]
    since_us: int
    sensitive_items: tuple[str, ...]

    def queries(self) -> list[tuple[Compiled, Mapping[str, Any]]]:
        """The statements, in order (a standby may answer them: ``registry.store.replica``)."""
        key, wanted = self.patient_key, list(self.items)
        queries: list[tuple[Compiled, Mapping[str, Any]]] = [
            (CURRENT_GENERATION, {"name": RECOGNITION}),
            (SHARING_ROWS, {"key": key}),
            (RESULTS_FOR, {"key": key, "items": wanted, "since": self.since_us}),
            (_SENSITIVE_REPORTS, {"key": key, "sensitive": list(self.sensitive_items)}),
            (_MEMBERS, {"key": key, "items": wanted, "since": self.since_us}),
        ]
        if self.org_id:
            queries.append((CARE_CONTEXT, {"org": self.org_id, "key": key}))
        return queries

    def answered(self, found: Sequence[Sequence[Any]]) -> CheckReads:
        """What the statements of :meth:`queries` answered."""
        generation = int(found[0][0].generation) if found[0] else 0
        in_care = bool(found[5]) if self.org_id else None
        sensitive = frozenset(r.report_id for r in found[3])
        return CheckReads(generation, self.patient_key, self.items, self.since_us, self.org_id, in_care,
                          list(found[2]), SharingRows.of_rows(found[1]), sensitive, list(found[4]))  # fmt: skip

    def read(self, conn: Connection) -> CheckReads:
        """The reads on ``conn``, in one round trip."""
        return self.answered(all_together(conn, self.queries()))
