"""The foundation's HTTP surface: /healthz, /fhir/metadata, the catalog CodeSystems, /docs, errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from registry.app import create_app
from registry.errors import CatalogUnavailableError
from registry.fhir.models import CapabilityStatement, CodeSystem, OperationOutcome
from registry.settings import Settings

FHIR_JSON = "application/fhir+json"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(var_dir=tmp_path_factory.mktemp("var"))
    with TestClient(create_app(settings)) as c:
        yield c


def test_healthz(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["catalog"] == {"edition": "2026.11", "lab": 181, "imaging": 300}


def test_metadata_is_a_valid_r4_capability_statement(client: TestClient) -> None:
    r = client.get("/fhir/metadata")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(FHIR_JSON)
    cs = CapabilityStatement.model_validate(r.json())
    assert cs.fhirVersion == "4.0.1"
    assert cs.kind == "instance"
    resources = {res.type: res for res in cs.rest[0].resource}
    assert set(resources) == {
        "CodeSystem",
        "AuditEvent",
        "Patient",
        "Organization",
        "Practitioner",
        "Endpoint",
        "DiagnosticReport",
        "Observation",
        "ImagingStudy",
        "ServiceRequest",
        "ConceptMap",
        "OperationDefinition",
        "SearchParameter",
        "Subscription",
        "Consent",
    }
    assert [i.code for i in resources["CodeSystem"].interaction] == ["read"]
    report = resources["DiagnosticReport"]
    names = {p.name for p in report.searchParam}
    assert {
        "patient",
        "subject",
        "code",
        "category",
        "date",
        "issued",
        "status",
        "identifier",
        "performer",
        "based-on",
        "_id",
        "_lastUpdated",
    } <= names
    assert "DiagnosticReport:result" in report.searchInclude
    assert {i.code for i in report.interaction} >= {"read", "vread", "update", "delete", "create", "search-type"}
    assert {i.code for i in cs.rest[0].interaction} == {"transaction", "batch"}
    # every operation is invoked on a type, so it is declared there (none is system-level)
    assert not cs.rest[0].operation
    assert {o.name for o in resources["ServiceRequest"].operation} == {"recognition-check", "recognition-decision"}
    assert [o.name for o in resources["Patient"].operation] == ["ihe-pix"]


def test_recognized_items_codesystem(client: TestClient) -> None:
    r = client.get("/fhir/CodeSystem/recognized-items")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(FHIR_JSON)
    cs = CodeSystem.model_validate(r.json())
    assert cs.content == "complete"
    assert cs.count == 481 == len(cs.concept)
    assert "loinc.org/license" in (cs.copyright or "")
    declared = {p.code for p in cs.property}
    by_code = {c.code: c for c in cs.concept}
    for concept in cs.concept:
        assert {p.code for p in concept.property} <= declared
    hb = by_code["L004"]
    props = {p.code: p for p in hb.property}
    assert hb.display == "血红蛋白"
    assert props["code"].valueCoding.code == "718-7"
    assert props["validity-days"].valueInteger == 7
    assert props["specimen"].valueCode == "whole_blood"
    cbc_members = [p.valueCode for p in by_code["L001"].property if p.code == "member"]
    assert "L004" in cbc_members
    ct = {p.code: p for p in by_code["I032"].property}
    assert ct["modality"].valueCoding.code == "CT"
    assert ct["contrast"].valueCode == "without"


def test_nonrecognition_reasons_codesystem(client: TestClient) -> None:
    r = client.get("/fhir/CodeSystem/nonrecognition-reasons")
    cs = CodeSystem.model_validate(r.json())
    codes = [c.code for c in cs.concept]
    assert codes == ["01", "02", "03", "04", "05", "06", "07", "08", "98", "99"]
    counted = {
        c.code: next(p.valueBoolean for p in c.property if p.code == "counts-as-nonrecognition") for c in cs.concept
    }
    assert [k for k, v in counted.items() if not v] == ["98", "99"]


def test_etag_and_conditional_read(client: TestClient) -> None:
    first = client.get("/fhir/CodeSystem/recognized-items")
    etag = first.headers["etag"]
    again = client.get("/fhir/CodeSystem/recognized-items", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""


def test_unknown_codesystem_is_a_404_operation_outcome(client: TestClient) -> None:
    r = client.get("/fhir/CodeSystem/loinc")
    assert r.status_code == 404
    oo = OperationOutcome.model_validate(r.json())
    assert oo.issue[0].code == "not-found"
    assert "recognized-items" in oo.issue[0].diagnostics


@pytest.mark.parametrize(
    ("headers", "params"),
    [({"Accept": "application/fhir+xml"}, {}), ({}, {"_format": "xml"}), ({"Accept": "text/html"}, {})],
)
def test_xml_is_not_acceptable(client: TestClient, headers: dict[str, str], params: dict[str, str]) -> None:
    r = client.get("/fhir/metadata", headers=headers, params=params)
    assert r.status_code == 406
    assert OperationOutcome.model_validate(r.json()).issue[0].code == "not-supported"


def test_json_format_parameter_is_accepted(client: TestClient) -> None:
    assert client.get("/fhir/metadata", params={"_format": "json"}).status_code == 200


def test_unknown_path_and_method_are_operation_outcomes(client: TestClient) -> None:
    r = client.get("/nothing/here")
    assert r.status_code == 404
    assert r.json()["resourceType"] == "OperationOutcome"
    r = client.get("/fhir/Nothing/here")  # the FHIR surface asks for a token before anything else
    assert r.status_code == 401
    assert r.json()["issue"][0]["code"] == "login"
    r = client.post("/fhir/metadata")
    assert r.status_code == 405
    assert r.json()["issue"][0]["code"] == "not-supported"


def test_openapi_docs(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/healthz", "/fhir/metadata", "/fhir/CodeSystem/{resource_id}"} <= set(paths)


def test_a_broken_catalog_stops_the_server_from_starting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("catalog: {edition: x}\nitems: []\n", encoding="utf-8")
    with pytest.raises(CatalogUnavailableError, match="invalid"):
        create_app(Settings(var_dir=tmp_path, catalog_path=bad))
    with pytest.raises(CatalogUnavailableError, match="not found"):
        create_app(Settings(var_dir=tmp_path, catalog_path=tmp_path / "missing.yaml"))
    bad.write_text("catalog: [unclosed\n", encoding="utf-8")
    with pytest.raises(CatalogUnavailableError, match="not valid YAML"):
        create_app(Settings(var_dir=tmp_path, catalog_path=bad))


def test_live_server_started_by_the_app_factory(live_server: str) -> None:
    import httpx

    assert httpx.get(f"{live_server}/healthz").json()["status"] == "ok"
    meta = httpx.get(f"{live_server}/fhir/metadata").json()
    assert meta["implementation"]["url"] == f"{live_server}/fhir"
    cs = httpx.get(f"{live_server}/fhir/CodeSystem/recognized-items").json()
    assert cs["count"] == 481
