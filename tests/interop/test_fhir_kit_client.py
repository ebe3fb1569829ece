"""fhir-kit-client (Node, the FHIR client of many JavaScript apps) against a live registry, on SQLite and
PostgreSQL: one small script per scenario in ``js/`` prints JSON, asserted here. Every scenario the client has an API
for: SMART discovery, tokens (client secret and private_key_jwt), create, read, update, vread, PATCH, conditional
create, search with ``_include`` and paging, a transaction and a batch — with GET entries.

The PATCH scenario and the GET entries in Bundles need PATCH and Bundle GET entries on the server (FHIR R4
http.html §3.1.0.5, §3.1.0.11)."""

from __future__ import annotations

import pytest

from tests.integration.conftest import NATIONAL, unique
from tests.interop import bundles
from tests.interop.conftest import KEY_CLIENT, KID, MRN, SECRET_CLIENT, Live, run_node

pytestmark = pytest.mark.usefixtures("node")


def _run(live: Live, script: str, **payload: object) -> dict[str, object]:
    result = run_node(script, fhir=live.fhir, token=live.token(), **payload)
    assert result["ok"], result
    return result


def test_smart_discovery_finds_the_token_url(live: Live) -> None:
    result = _run(live, "smart_discovery.mjs")
    assert result["tokenUrl"] == live.token_url
    assert result["authorizeUrl"] is None  # no authorization-code grant offered
    assert result["fhirVersion"] == "4.0.1"


def test_tokens_from_a_client_secret_and_from_private_key_jwt(live: Live) -> None:
    result = _run(live, "token.mjs", secretClient=SECRET_CLIENT, secret=live.secret, keyClient=KEY_CLIENT, kid=KID,
                  privateKeyPem=live.private_key_pem())  # fmt: skip
    assert result["tokenUrl"] == live.token_url
    for how in ("secret", "privateKeyJwt"):
        got = result[how]
        assert got["status"] == 200, (how, got)  # type: ignore[index]
        assert got["scope"] == "system/*.read" and got["read"] == "hosp-b", (how, got)  # type: ignore[index]
    assert result["privateKeyJwt"]["expiresIn"] <= 300  # type: ignore[index]
    assert result["wrongSecret"] == {"status": 401, "error": "invalid_client"}


def test_create_read_update_vread(live: Live) -> None:
    patient = live.patient_body()
    result = _run(live, "crud.mjs", patient=patient)
    created, read, updated, vread = (result[k] for k in ("created", "read", "updated", "vread"))
    pid = created["id"]  # type: ignore[index]
    assert created["status"] == 201 and created["versionId"] == "1"  # type: ignore[index]
    assert created["location"].startswith(f"{live.fhir}/Patient/{pid}")  # type: ignore[index]
    assert created["etag"] == 'W/"1"'  # type: ignore[index]
    assert read == {"status": 200, "location": None, "etag": 'W/"1"', "id": pid, "family": "互"}
    assert updated["status"] == 200 and updated["versionId"] == "2" and updated["family"] == "改"  # type: ignore[index]
    assert vread["status"] == 200 and vread["versionId"] == "1" and vread["family"] == "互"  # type: ignore[index]
    national = next(i["value"] for i in patient["identifier"] if i["system"] == NATIONAL)
    assert national not in str(result)  # the national identifier never comes back


def test_conditional_create_makes_one_patient(live: Live) -> None:
    mrn = unique("B")
    result = _run(live, "conditional_create.mjs", patient=live.patient_body(mrn),
                  ifNoneExist=f"identifier={MRN}|{mrn}")  # fmt: skip
    first, second = result["first"], result["second"]
    assert first["status"] == 201 and second["status"] == 200, result  # type: ignore[index]
    assert first["id"] == second["id"]  # type: ignore[index]
    assert live.count("Patient", f"identifier={MRN}|{mrn}") == 1


def test_patch_with_json_patch_and_if_match(live: Live) -> None:
    patient = live.create(live.patient_body())
    result = _run(live, "patch.mjs", id=patient["id"])
    assert result["before"] == {"versionId": "1", "gender": "female"}
    patched = result["patched"]
    assert patched["status"] == 200 and patched["versionId"] == "2" and patched["gender"] == "male", result  # type: ignore[index]
    assert result["stale"] == {"status": 412, "issue": "conflict"}  # If-Match of version 1, now at 2
    assert result["after"] == {"versionId": "2", "gender": "male"}


def test_search_with_include_follows_every_next_link(live: Live) -> None:
    patient = live.create(live.patient_body())
    reports = {f"DiagnosticReport/{live.create(live.report_body(patient['id']))['id']}" for _ in range(5)}
    params = {"patient": f"Patient/{patient['id']}", "_count": 2, "_include": "DiagnosticReport:subject"}
    result = _run(live, "search_paging.mjs", searchParams=params)
    pages = result["pages"]
    assert [len(p["matches"]) for p in pages] == [2, 2, 1]  # type: ignore[union-attr, index]
    assert {m for p in pages for m in p["matches"]} == reports  # type: ignore[union-attr, index]
    assert all(p["includes"] == [f"Patient/{patient['id']}"] for p in pages)  # type: ignore[union-attr, index]


def test_a_transaction_of_writes(live: Live) -> None:
    mrn = unique("B")
    result = _run(live, "transaction.mjs", bundle=bundles.transaction(live, mrn))
    assert result["type"] == "transaction-response"
    statuses = [e["status"] for e in result["entries"]]  # type: ignore[union-attr, index]
    assert all(s.startswith("201") for s in statuses), result
    assert live.count("Patient", f"identifier={MRN}|{mrn}") == 1


def test_a_transaction_with_a_get_entry_sees_its_own_writes(live: Live) -> None:
    mrn = unique("B")
    result = _run(live, "transaction.mjs", bundle=bundles.transaction(live, mrn, with_get=True))
    assert result["type"] == "transaction-response", result
    got, *writes = result["entries"]  # type: ignore[misc]
    assert [w["status"][:3] for w in writes] == ["201", "201", "201"], result
    patient = writes[0]["location"].split("/_history")[0].split("/fhir/")[-1]
    assert got["status"].startswith("200") and got["bundleType"] == "searchset", got
    assert got["matches"] == [patient]


def test_a_batch_with_get_entries(live: Live) -> None:
    patient = live.create(live.patient_body())
    report = live.create(live.report_body(patient["id"]))
    result = _run(live, "batch.mjs", bundle=bundles.batch_with_reads(patient["id"]))
    assert result["type"] == "batch-response", result
    read, search, write = result["entries"]  # type: ignore[misc]
    assert read["status"].startswith("200") and read["id"] == patient["id"], read
    assert search["status"].startswith("200") and search["matches"] == [f"DiagnosticReport/{report['id']}"], search
    assert write["status"].startswith("201"), write
