"""A hypothesis state machine: random pushes, corrections, withdrawals, deletions and code-map changes — after every
step the result index equals a recomputation from the stored resources."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from catalog.codes import HR_MARK
from registry.app import build_context
from registry.auth import Principal, PrincipalKind, parse_scopes
from registry.context import AppContext
from registry.services.audit import AuditContext
from registry.services.code_maps import CODE_MAP_ORG
from tests.integration.conftest import NATIONAL, Database, make_settings, namespaces_of, resident_id

LOCAL = "http://hosp-a.example/lab-codes"
CODES = [
    ("http://loinc.org", "58410-2"),
    ("http://loinc.org", "718-7"),
    ("http://loinc.org", "6690-2"),
    (LOCAL, "L-HB"),
    (LOCAL, "L-WBC"),
    ("urn:unknown", "X"),
]
STATUSES = ["final", "amended", "corrected", "preliminary", "entered-in-error"]

_CTX: dict[str, AppContext] = {}


@pytest.fixture(scope="module")
def ctx(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppContext]:
    context = build_context(make_settings(tmp_path_factory.mktemp("var"), database.url))
    admin = context.principals.add(PrincipalKind.ADMIN, "admin", "Admin").principal
    audit = AuditContext("setup", admin, "update")
    context.ingest.update(
        admin,
        audit,
        "Organization",
        "hosp-a",
        orjson.dumps({"resourceType": "Organization", "id": "hosp-a", "name": "A"}).decode(),
        None,
    )
    context.namespaces.declare(admin, "hosp-a", namespaces_of("hosp-a"))
    _CTX["ctx"] = context
    yield context
    context.engine.dispose()


HOSPITAL = Principal("hosp-a-system", PrincipalKind.HOSPITAL, parse_scopes("system/*.write system/*.read"), "hosp-a")
AUDIT = AuditContext("state-machine", HOSPITAL, "transaction")


class IndexMachine(RuleBasedStateMachine):
    reports = Bundle("reports")

    @initialize()
    def setup(self) -> None:
        self.ctx = _CTX["ctx"]
        self.run = uuid.uuid4().hex[:8]
        self.patients: list[str] = []
        for n in range(2):
            body = {
                "resourceType": "Patient",
                "managingOrganization": {"reference": "Organization/hosp-a"},
                "identifier": [
                    {"system": "http://hosp-a.example/mrn", "value": f"{self.run}-{n}"},
                    {"system": NATIONAL, "value": resident_id(int(self.run[:6], 16) + n)},
                ],
            }
            result = self.ctx.ingest.create(HOSPITAL, AUDIT, "Patient", orjson.dumps(body).decode(), None)
            self.patients.append(result.stored.id)
        self.contents: dict[str, dict[str, Any]] = {}

    def _push(self, number: str, content: dict[str, Any]) -> None:
        base = "http://hosp-a.example"
        tag = {"meta": {"tag": [{"system": HR_MARK, "code": "HR"}]}} if content["marked"] else {}
        entries = []
        for k, (system, code) in enumerate(content["obs"]):
            entries.append(
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{number}-{k}')}",
                    "resource": {
                        "resourceType": "Observation",
                        "status": content["obs_status"],
                        "identifier": [{"system": f"{base}/obs", "value": f"{number}-{k}"}],
                        "code": {"coding": [{"system": system, "code": code}]},
                        "subject": {"reference": f"Patient/{content['patient']}"},
                        "effectiveDateTime": content["when"],
                        "valueQuantity": {"value": content["value"] + k},
                        "performer": [{"reference": "Organization/hosp-a"}],
                    },
                    "request": {"method": "POST", "url": "Observation"}
                    if content.get("post")
                    else {"method": "PUT", "url": f"Observation?identifier={base}/obs|{number}-{k}"},
                }
            )
        system, code = content["code"]
        entries.append(
            {
                "resource": {
                    "resourceType": "DiagnosticReport",
                    "status": content["status"],
                    **tag,
                    "identifier": [{"system": f"{base}/report", "value": number}],
                    "code": {"coding": [{"system": system, "code": code}]},
                    "subject": {"reference": f"Patient/{content['patient']}"},
                    "effectiveDateTime": content["when"],
                    "performer": [{"reference": "Organization/hosp-a"}],
                    content.get("listed_as", "result"): [{"reference": e["fullUrl"]} for e in entries],
                },
                "request": {"method": "POST", "url": "DiagnosticReport"}
                if content.get("post")
                else {"method": "PUT", "url": f"DiagnosticReport?identifier={base}/report|{number}"},
            }
        )
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        self.ctx.ingest.bundle(HOSPITAL, AUDIT, orjson.dumps(bundle).decode(), representation=False)
        self.contents[number] = content

    @rule(
        target=reports,
        patient=st.integers(0, 1),
        code=st.sampled_from(CODES),
        obs=st.lists(st.sampled_from(CODES), max_size=2, unique=True),
        marked=st.booleans(),
        status=st.sampled_from(STATUSES),
        day=st.integers(1, 28),
        value=st.integers(50, 200),
        post=st.booleans(),
        listed_as=st.sampled_from(["result", "result", "imagingStudy"]),
    )
    def push(
        self, patient: int, code: Any, obs: Any, marked: bool, status: str, day: int, value: int, post: bool,
        listed_as: str,
    ) -> str:  # fmt: skip
        """A new report and its results, created by POST (ids of the server's making) or by conditional PUT; listed
        as ``result`` or, wrongly for an Observation, as ``imagingStudy`` (which governs nothing of it)."""
        number = f"{self.run}-{len(self.contents)}"
        self._push(
            number,
            {
                "post": post,
                "listed_as": listed_as,
                "patient": self.patients[patient],
                "code": code,
                "obs": obs,
                "marked": marked,
                "status": status,
                "obs_status": "final",
                "when": f"2026-02-{day:02d}T08:00:00+08:00",
                "value": value,
            },
        )
        return number

    @rule(number=reports, status=st.sampled_from(STATUSES), value=st.integers(50, 200), marked=st.booleans())
    def correct(self, number: str, status: str, value: int, marked: bool) -> None:
        content = {**self.contents[number], "status": status, "value": value, "marked": marked, "post": False}
        self._push(number, content)

    @rule(number=reports)
    def withdraw_results(self, number: str) -> None:
        self._push(number, {**self.contents[number], "obs_status": "entered-in-error", "post": False})

    @rule(number=reports)
    def delete_report(self, number: str) -> None:
        with self.ctx.uow.begin() as repo:
            stored = repo.by_identifier("DiagnosticReport", "http://hosp-a.example/report", number)
        if stored is not None:
            self.ctx.ingest.delete(HOSPITAL, AUDIT, "DiagnosticReport", stored.id)

    @rule(hb=st.sampled_from(["L001", "L004", None]), wbc=st.sampled_from(["L003", "L002", None]))
    def change_code_map(self, hb: str | None, wbc: str | None) -> None:
        elements = [
            {"code": c, "target": [{"code": item, "equivalence": "equivalent"}]}
            for c, item in (("L-HB", hb), ("L-WBC", wbc))
            if item is not None
        ]
        cm_id = "hosp-a-lab-codes"
        if not elements:
            self.ctx.ingest.delete(HOSPITAL, AUDIT, "ConceptMap", cm_id)
            return
        concept_map = {
            "resourceType": "ConceptMap",
            "id": cm_id,
            "status": "active",
            "extension": [{"url": CODE_MAP_ORG, "valueReference": {"reference": "Organization/hosp-a"}}],
            "group": [{"source": LOCAL, "element": elements}],
        }
        self.ctx.ingest.update(HOSPITAL, AUDIT, "ConceptMap", cm_id, orjson.dumps(concept_map).decode(), None)

    @invariant()
    def index_equals_recomputation(self) -> None:
        if not hasattr(self, "ctx"):
            return
        diff = self.ctx.administration.check()
        assert diff.clean, (diff.missing[:3], diff.extra[:3])


IndexMachine.TestCase.settings = settings(
    max_examples=15, stateful_step_count=12, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def test_the_index_always_equals_a_recomputation(ctx: AppContext) -> None:
    IndexMachine.TestCase().runTest()
