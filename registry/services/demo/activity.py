"""Months of order checks and decisions for the demo region, so ``/stats`` shows a picture on first start.

They go through the real services — the order check (``RecognitionService.check``) and the decisions
(``Decisions.record``) — with a clock that steps through the months before ``now``: clinicians of each hospital order
tests for the demo patients a few days after a result of theirs at another hospital (recognitions, and declines with
every reason), or at the hospital that did it (duplicate orders), or with nothing on file; now and then a hospital
opens a patient outside its care by break-glass. Seeded, so the same ``now`` gives the same decisions."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from catalog import REASONS, Catalog, Coding, Status
from catalog.codes import NONRECOGNITION_REASONS, RECOGNIZED_ITEMS
from registry.auth import Principal, PrincipalKind, parse_scopes
from registry.errors import RegistryError
from registry.services.audit import AuditContext
from registry.services.config_cache import ConfigCache
from registry.services.decisions import DECLINED, RECOGNIZED, DecisionInput, Decisions
from registry.services.demo.people import HOSPITALS, NATIONAL_ID, DemoPatient
from registry.services.identity import IdentityPolicy
from registry.services.policy.purpose import BreakGlass
from registry.services.recognition import RecognitionService
from registry.services.recognition_orders import DraftOrder, PatientQuery
from registry.services.result_index import ResultIndexer
from registry.store.recognition import RecognitionStore
from registry.store.repository import UnitOfWork

COMMENTS = {"99": "2型糖尿病血糖监测", "01": "症状加重，需复查", "08": "患者要求复查"}
GLASS_REASONS = ("急诊抢救，患者意识不清，无法提供既往资料", "夜间急诊，需核对既往影像", "危重患者转入，需查既往检验")


def _clinician(org: str) -> Principal:
    return Principal(f"demo-dr-{org}", PrincipalKind.CLINICIAN, parse_scopes("user/*.read"), org,
                     name=f"示范医生（{next(h.short for h in HOSPITALS if h.id == org)}）")  # fmt: skip


class DemoActivity:
    def __init__(
        self,
        uow: UnitOfWork,
        catalog: Catalog,
        identity: IdentityPolicy,
        indexer: ResultIndexer,
        *,
        seed: int = 20261122,
    ) -> None:
        self.uow = uow
        self.catalog = catalog
        self.identity = identity
        self.at = datetime.fromtimestamp(0, UTC)
        clock: Callable[[], datetime] = lambda: self.at  # noqa: E731 - the stepping clock of the replay
        cache = ConfigCache(ttl_seconds=0)
        self.recognition = RecognitionService(uow, catalog, identity, indexer, clock, cache)
        self.decisions = Decisions(uow, catalog, clock)
        self.seed = seed

    def _results(self, key: str) -> list[Any]:
        with self.uow.begin(audit_only=True) as repo:
            return [
                r for r in RecognitionStore(repo.conn).results_of_patient(key, 0) if r.res_type == "DiagnosticReport"
            ]

    def run(self, patients: list[DemoPatient], now: datetime, tz: tzinfo, *, days: int = 150) -> dict[str, int]:
        """Replay ``days`` of ordering before ``now``; the counts of what was recorded."""
        rng = random.Random(self.seed + 1)  # noqa: S311 - synthetic demo data
        counts = {"checks": 0, "recognized": 0, "declined": 0, "duplicates": 0, "break_glass": 0}
        start = now - timedelta(days=days)
        visits: list[tuple[datetime, DemoPatient, str, list[str], bool]] = []
        items = sorted({i.id for i in self.catalog.items if not i.is_panel and i.kind.value == "lab"})[:40]
        for p in patients:
            key = self.identity.master_key(NATIONAL_ID, p.national_id)
            for row in self._results(key):
                when = datetime.fromtimestamp(row.effective_us / 1_000_000, tz)
                validity = self.catalog.item(row.item_id).validity.days if row.item_id in self.catalog else 7
                after = when + timedelta(days=rng.uniform(0.5, max(1.0, min(validity, 30) - 0.5)))
                if after <= start or after >= now - timedelta(hours=1) or rng.random() < 0.35:
                    continue
                others = [h.id for h in p.hospitals if h.id != row.org_id]
                own = rng.random() < 0.15 or not others
                org = row.org_id if own else rng.choice(others)
                extra = [rng.choice(items)] if rng.random() < 0.4 else []
                visits.append((after, p, org, [row.item_id, *extra], False))
            if rng.random() < 0.12:  # break-glass at a hospital that does not know the patient
                strangers = [h.id for h in HOSPITALS if h not in p.hospitals]
                if strangers:
                    moment = start + timedelta(days=rng.uniform(1, days - 1))
                    visits.append((moment, p, rng.choice(strangers), [rng.choice(items)], True))
        visits.sort(key=lambda v: (v[0], v[1].national_id))
        declines = 0
        for moment, p, org, wanted, glass in visits:
            self.at = moment.replace(hour=rng.randrange(8, 17), minute=rng.randrange(0, 60), second=0, microsecond=0)
            if self.at >= now or self.at <= start:
                continue
            principal = _clinician(org)
            hospital = next(h for h in HOSPITALS if h.id == org)
            if glass:
                query = PatientQuery([(NATIONAL_ID, p.national_id)])
                audit = AuditContext(f"demo-{uuid.uuid4()}", principal, "operation", "CDS Hooks", "hr-order-select",
                                     break_glass=BreakGlass(rng.choice(GLASS_REASONS)))  # fmt: skip
            else:
                query = PatientQuery([(f"{hospital.base}/mrn", p.mrns[org])])
                audit = AuditContext(f"demo-{uuid.uuid4()}", principal, "operation", "CDS Hooks", "hr-order-select")
            orders = [DraftOrder(f"ServiceRequest/demo-{uuid.uuid4().hex[:12]}", (Coding(RECOGNIZED_ITEMS, i),))
                      for i in dict.fromkeys(wanted)]  # fmt: skip
            try:
                checked = self.recognition.check(principal, audit, query, orders, source="order-select",
                                                 hook_instance=str(uuid.uuid4()))  # fmt: skip
            except RegistryError:
                continue
            counts["checks"] += len(checked)
            counts["break_glass"] += glass
            for c in checked:
                if c.card_uuid is None or not c.candidates or c.candidates[0].effective >= self.at:
                    continue
                duplicate = c.decision.status is Status.SAME_HOSPITAL_DUPLICATE
                if rng.random() < (0.75 if duplicate else 0.72):
                    decision = DecisionInput(c.card_uuid, RECOGNIZED)
                elif duplicate:  # the repeat is ordered all the same
                    decision = DecisionInput(c.card_uuid, DECLINED, NONRECOGNITION_REASONS, "07")
                else:
                    # every reason is given at least once, then the common ones more often
                    reason = REASONS[declines] if declines < len(REASONS) else rng.choice(REASONS[:3] + REASONS[6:])
                    declines += 1
                    comment = COMMENTS.get(reason.code)
                    decision = DecisionInput(c.card_uuid, DECLINED, NONRECOGNITION_REASONS, reason.code, comment)
                self.at += timedelta(minutes=rng.randrange(1, 6))
                self.decisions.record(principal, audit, decision, source="order-select")
                counts["duplicates" if duplicate else decision.outcome] += 1
        return counts
