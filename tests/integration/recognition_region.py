"""The recognition region of tests/integration/test_recognition.py (hospitals A, B, C with their regions, A and B
qualified for haematology, CT and MR, B's local order codes) as a context manager, for test modules that need a
database of their own: their figures and hospitals start from nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from fastapi.testclient import TestClient

from registry.app import create_app
from registry.auth import PrincipalKind
from registry.context import AppContext
from registry.services.audit import AuditContext
from registry.services.code_maps import CODE_MAP_ORG
from registry.services.demo import REGION_EXT
from tests.integration.conftest import Api, Database, make_settings, namespaces_of, new_resident_id, unique
from tests.integration.test_recognition import B_CODES, Clock

REGIONS = {"hosp-a": ["beijing", "jjjl"], "hosp-b": ["beijing", "jjjl"], "hosp-c": ["beijing"]}


def add_organization(ctx: AppContext, org: str, regions: list[str]) -> None:
    admin = ctx.principals.get("admin")
    assert admin is not None
    body = {
        "resourceType": "Organization",
        "id": org,
        "name": f"{org.upper()} 医院",
        "extension": [{"url": REGION_EXT, "valueCode": r} for r in regions],
    }
    ctx.ingest.update(
        admin, AuditContext("setup", admin, "update"), "Organization", org, orjson.dumps(body).decode(), None
    )
    if not ctx.namespaces.list(org):
        ctx.namespaces.declare(admin, org, namespaces_of(org))


def set_up_recognition(ctx: AppContext) -> None:
    """The region's hospitals, principals, qualifications and code map, written through ``ctx``."""
    admin = ctx.principals.add(PrincipalKind.ADMIN, "admin", "Admin").principal
    audit = AuditContext("setup", admin, "update")
    for org, regions in REGIONS.items():
        add_organization(ctx, org, regions)
        ctx.principals.add(PrincipalKind.HOSPITAL, f"{org}-system", org, org_id=org)
        ctx.principals.add(PrincipalKind.CLINICIAN, f"dr-{org}", f"医生 {org}", org_id=org)
    for group in ("hematology", "ct", "mr"):  # hosp-c has none: an unqualified issuer
        for org in ("hosp-a", "hosp-b"):
            ctx.administration.add(admin, {"org": org, "group": group, "scope": "beijing", "valid_from": "2025-01-01"})
    concept_map = {
        "resourceType": "ConceptMap",
        "id": "hosp-b-orders",
        "status": "active",
        "extension": [{"url": CODE_MAP_ORG, "valueReference": {"reference": "Organization/hosp-b"}}],
        "group": [
            {
                "source": B_CODES,
                "target": "https://hr-registry.org.cn/fhir/CodeSystem/recognized-items",
                "element": [
                    {"code": "XCG", "display": "血常规", "target": [{"code": "L001", "equivalence": "equivalent"}]}
                ],
            }
        ],
    }
    ctx.ingest.update(admin, audit, "ConceptMap", "hosp-b-orders", orjson.dumps(concept_map).decode(), None)


@contextmanager
def recognition_region(database: Database, var: Path, clock: Clock) -> Iterator[Api]:
    settings = make_settings(var, database.url)
    app = create_app(settings, clock=clock)
    ctx: AppContext = app.state.ctx
    set_up_recognition(ctx)
    try:
        with TestClient(app) as client:
            yield Api(client, ctx)
    finally:
        ctx.engine.dispose()


def new_person(api: Api) -> dict[str, Any]:
    """One person at A (MRN A-…) and at B (MRN B-…), one national identifier."""
    nid = new_resident_id()
    return {"nid": nid, "a": api.patient("hosp-a", unique("A"), nid), "b": api.patient("hosp-b", unique("B"), nid)}
