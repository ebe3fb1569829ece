"""fhirpy (the Python FHIR client) against a live registry, on SQLite and PostgreSQL, for every scenario it has an
API for: create, read and update (``save``), conditional create (its ``get_or_create``), search with paging
(``fetch_all`` follows the next links) and ``_include``, ``count()``, and its ``patch()``. fhirpy asks for no tokens:
it is given one the registry issued for a client secret. It has no vread and no Bundle helpers.

``count()`` sends ``_count=0&_totalMethod=count``: ``_totalMethod`` is no R4 parameter, so it works only where an
unknown parameter is ignored, R4's default (search.html, ``handling=lenient``). fhirpy's ``patch()`` sends a partial
resource as ``application/json``, which is none of R4's PATCH formats (http.html §3.1.0.5): it must be refused and
change nothing."""

from __future__ import annotations

import httpx
import pytest
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome

from tests.integration.conftest import unique
from tests.interop.conftest import MRN, SECRET_CLIENT, Live


@pytest.fixture(scope="module")
def client(live: Live) -> SyncFHIRClient:
    r = httpx.post(live.token_url, data={"grant_type": "client_credentials"}, auth=(SECRET_CLIENT, live.secret))
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    return SyncFHIRClient(live.fhir, authorization=f"Bearer {token}",
                          extra_headers={"Content-Type": "application/fhir+json"})  # fmt: skip


def test_create_read_update(live: Live, client: SyncFHIRClient) -> None:
    patient = client.resource("Patient", **live.patient_body())
    patient.save()
    assert patient.id and patient["meta"]["versionId"] == "1"
    fetched = client.reference("Patient", patient.id).to_resource()
    assert fetched["name"][0]["family"] == "互"
    fetched["name"] = [{"family": "改", "given": ["名"]}]
    fetched.save()
    assert fetched["meta"]["versionId"] == "2"
    again = client.reference("Patient", patient.id).to_resource()
    assert again["name"][0]["family"] == "改" and again["meta"]["versionId"] == "2"


def test_get_or_create_never_makes_a_duplicate(live: Live, client: SyncFHIRClient) -> None:
    """``get_or_create`` POSTs with the search in the URL: the registry either treats it as a conditional create or
    refuses it — it never creates a second Patient with the same MRN."""
    mrn = unique("B")
    body = live.patient_body(mrn)
    ids = []
    for _ in range(2):
        try:
            patient, _created = (
                client.resources("Patient")
                .search(identifier=f"{MRN}|{mrn}")
                .get_or_create(client.resource("Patient", **body))
            )
            ids.append(patient.id)
        except OperationOutcome:
            pass
    assert len(set(ids)) <= 1
    assert live.count("Patient", f"identifier={MRN}|{mrn}") <= 1


def test_fetch_all_follows_the_next_links(live: Live, client: SyncFHIRClient) -> None:
    patient = live.create(live.patient_body())
    reports = {live.create(live.report_body(patient["id"]))["id"] for _ in range(5)}
    found = client.resources("DiagnosticReport").search(patient=f"Patient/{patient['id']}").limit(2).fetch_all()
    assert sorted(r.id for r in found) == sorted(reports)


def test_include_brings_the_subject(live: Live, client: SyncFHIRClient) -> None:
    patient = live.create(live.patient_body())
    report = live.create(live.report_body(patient["id"]))
    search = client.resources("DiagnosticReport").search(patient=f"Patient/{patient['id']}")
    bundle = search.include("DiagnosticReport", "subject").fetch_raw()
    modes = {(e["resource"]["resourceType"], e["resource"]["id"], e["search"]["mode"]) for e in bundle["entry"]}
    assert modes == {("DiagnosticReport", report["id"], "match"), ("Patient", patient["id"], "include")}


def test_count(live: Live, client: SyncFHIRClient) -> None:
    patient = live.create(live.patient_body())
    for _ in range(3):
        live.create(live.report_body(patient["id"]))
    assert client.resources("DiagnosticReport").search(patient=f"Patient/{patient['id']}").count() == 3


def test_fhirpys_merge_patch_is_refused_and_changes_nothing(live: Live, client: SyncFHIRClient) -> None:
    patient = live.create(live.patient_body())
    with pytest.raises(OperationOutcome):
        client.resource("Patient", id=patient["id"]).patch(gender="male")
    after = client.reference("Patient", patient["id"]).to_resource()
    assert after["gender"] == "female" and after["meta"]["versionId"] == "1"
