"""fhirclient (the SMART on FHIR Python client) against a live registry, on SQLite and PostgreSQL, for every scenario
it has an API for: SMART discovery from the CapabilityStatement's ``oauth-uris``, a token with ``private_key_jwt``
(SMART Backend Services: fhirclient sets up the client-credentials grant only with an assertion, not with a client
secret), create, read, update, vread (``read_from`` a ``_history`` path), search with ``_include`` and paging
(``perform_iter`` follows the next links), and transaction and batch Bundles through its server's ``post_json``.
fhirclient has no conditional create and no PATCH.

The GET entries in Bundles need them on the server (FHIR R4 http.html §3.1.0.11)."""

from __future__ import annotations

from typing import Any

import pytest
from fhirclient import client as smart
from fhirclient.auth import FHIROAuth2Auth
from fhirclient.models.bundle import Bundle
from fhirclient.models.diagnosticreport import DiagnosticReport
from fhirclient.models.patient import Patient

from tests.integration.conftest import unique
from tests.interop import bundles
from tests.interop.conftest import KEY_CLIENT, MRN, Live


@pytest.fixture(scope="module")
def fhir(live: Live) -> smart.FHIRClient:
    """Discovery and the token, as a backend service does them with fhirclient."""
    client = smart.FHIRClient(settings={"app_id": KEY_CLIENT, "api_base": live.fhir, "jwt_token": live.assertion(),
                                        "scope": "system/*.read system/Patient.write system/Observation.write "
                                        "system/DiagnosticReport.write"})  # fmt: skip
    client.prepare()
    assert isinstance(client.server.auth, FHIROAuth2Auth)
    assert client.server.auth._token_uri == live.token_url  # from the CapabilityStatement's oauth-uris
    client.authorize()
    assert client.server.auth.access_token
    return client


def test_discovery_and_a_private_key_jwt_token(fhir: smart.FHIRClient) -> None:
    organization = fhir.server.request_json("Organization/hosp-b")
    assert organization["id"] == "hosp-b"


def test_create_read_update_vread(live: Live, fhir: smart.FHIRClient) -> None:
    server = fhir.server
    created = Patient(live.patient_body()).create(server)
    assert created is not None and created["meta"]["versionId"] == "1"
    patient = Patient.read(created["id"], server)
    assert patient.name[0].family == "互"
    patient.name[0].family = "改"
    updated = patient.update(server)
    assert updated is not None and updated["meta"]["versionId"] == "2"
    assert Patient.read(created["id"], server).name[0].family == "改"
    first = Patient.read_from(f"Patient/{created['id']}/_history/1", server)
    assert first.meta.versionId == "1" and first.name[0].family == "互"


def test_search_with_include_follows_every_next_link(live: Live, fhir: smart.FHIRClient) -> None:
    patient = live.create(live.patient_body())
    reports = {live.create(live.report_body(patient["id"]))["id"] for _ in range(5)}
    search = DiagnosticReport.where(struct={"patient": f"Patient/{patient['id']}", "_count": "2"}).include("subject")
    pages = list(search.perform_iter(fhir.server))
    matches = [[e.resource.id for e in b.entry if e.search.mode == "match"] for b in pages]
    includes = [[e.resource.id for e in b.entry if e.search.mode == "include"] for b in pages]
    assert [len(m) for m in matches] == [2, 2, 1]
    assert {i for m in matches for i in m} == reports
    assert includes == [[patient["id"]]] * 3


def _post_bundle(fhir: smart.FHIRClient, bundle: dict[str, Any]) -> Bundle:
    response = fhir.server.post_json("", bundle)  # the FHIR base
    return Bundle(response.json())


def test_a_transaction_of_writes(live: Live, fhir: smart.FHIRClient) -> None:
    mrn = unique("B")
    answer = _post_bundle(fhir, bundles.transaction(live, mrn))
    assert answer.type == "transaction-response"
    assert [e.response.status[:3] for e in answer.entry] == ["201", "201", "201"]
    assert live.count("Patient", f"identifier={MRN}|{mrn}") == 1


def test_a_transaction_with_a_get_entry_sees_its_own_writes(live: Live, fhir: smart.FHIRClient) -> None:
    mrn = unique("B")
    answer = _post_bundle(fhir, bundles.transaction(live, mrn, with_get=True))
    got, *writes = answer.entry
    assert [w.response.status[:3] for w in writes] == ["201", "201", "201"]
    assert got.response.status.startswith("200") and got.resource.type == "searchset"
    patient = writes[0].response.location.split("/_history")[0].split("/fhir/")[-1]
    assert [f"Patient/{e.resource.id}" for e in got.resource.entry] == [patient]


def test_a_batch_with_get_entries(live: Live, fhir: smart.FHIRClient) -> None:
    patient = live.create(live.patient_body())
    report = live.create(live.report_body(patient["id"]))
    answer = _post_bundle(fhir, bundles.batch_with_reads(patient["id"]))
    assert answer.type == "batch-response"
    read, search, write = answer.entry
    assert read.response.status.startswith("200") and read.resource.id == patient["id"]
    assert search.response.status.startswith("200") and [e.resource.id for e in search.resource.entry] == [report["id"]]
    assert write.response.status.startswith("201")
