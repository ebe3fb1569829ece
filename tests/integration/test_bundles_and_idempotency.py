"""Transaction and batch Bundles, conditional create/update, and business-identifier idempotency."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from registry.auth import Principal, PrincipalKind, parse_scopes
from registry.services.audit import AuditContext
from registry.services.ingest.entries import BundleItem
from registry.services.ingest.session import RetryError, Session
from tests.integration.conftest import NATIONAL, Api, resident_id, unique


def _count(api: Api, rtype: str, **params: str) -> int:
    r = api.get(f"/fhir/{rtype}", params={**params, "_summary": "count"})
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def _lab_bundle(org: str, mrn: str, nid: str, report_no: str, *, hb: str = "135.5") -> dict[str, Any]:
    base = f"http://{org}.example"
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": f"{base}/mrn", "value": mrn}, {"system": NATIONAL, "value": nid}],
                    "managingOrganization": {"reference": f"Organization/{org}"},
                },
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={base}/mrn|{mrn}"},
            },
            {
                "fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222",
                "resource": {
                    "resourceType": "Observation",
                    "identifier": [{"system": f"{base}/obs", "value": f"{report_no}-1"}],
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
                    "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"},
                    "effectiveDateTime": "2025-03-01T08:00:00+08:00",
                    "performer": [{"reference": f"Organization/{org}"}],
                },
                "request": {"method": "PUT", "url": f"Observation?identifier={base}/obs|{report_no}-1"},
            },
            {
                "fullUrl": "urn:uuid:33333333-3333-4333-8333-333333333333",
                "resource": {
                    "resourceType": "DiagnosticReport",
                    "identifier": [{"system": f"{base}/report", "value": report_no}],
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
                    "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"},
                    "effectiveDateTime": "2025-03-01T08:00:00+08:00",
                    "performer": [{"reference": f"Organization/{org}"}],
                    "result": [{"reference": "urn:uuid:22222222-2222-4222-8222-222222222222"}],
                },
                "request": {"method": "PUT", "url": f"DiagnosticReport?identifier={base}/report|{report_no}"},
            },
        ],
    }


def _with_value(bundle: dict[str, Any], text: str) -> str:
    import orjson

    raw = orjson.dumps(bundle).decode()
    return raw.replace(
        '"effectiveDateTime":"2025-03-01T08:00:00+08:00","performer"',
        f'"effectiveDateTime":"2025-03-01T08:00:00+08:00","valueQuantity":{{"value":{text},"unit":"g/L"}},"performer"',
        1,
    )


def test_transaction_resolves_urn_uuids_and_answers_a_transaction_response(api: Api) -> None:
    mrn, number = unique("A"), unique("R")
    r = api.post(
        "/fhir", _with_value(_lab_bundle("hosp-a", mrn, resident_id(101), number), "135.50"), who="hosp-a-system"
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in body["entry"]]
    assert statuses == ["201 Created", "201 Created", "201 Created"]
    report_loc = body["entry"][2]["response"]["location"]
    report = api.get(f"/fhir/{report_loc.split('/_history')[0]}").json()
    patient_id = body["entry"][0]["response"]["location"].split("/")[1]
    obs_id = body["entry"][1]["response"]["location"].split("/")[1]
    assert report["subject"]["reference"] == f"Patient/{patient_id}"
    assert report["result"] == [{"reference": f"Observation/{obs_id}"}]
    obs = api.get(f"/fhir/Observation/{obs_id}").text
    assert '"value":135.50' in obs  # bytes kept inside a Bundle too


def test_the_same_bundle_pushed_again_changes_nothing(api: Api) -> None:
    mrn, number = unique("A"), unique("R")
    bundle = _lab_bundle("hosp-a", mrn, resident_id(102), number)
    first = api.post("/fhir", bundle, who="hosp-a-system").json()
    counts = (_count(api, "Patient"), _count(api, "Observation"), _count(api, "DiagnosticReport"))
    second = api.post("/fhir", bundle, who="hosp-a-system")
    assert second.status_code == 200
    assert [e["response"]["status"] for e in second.json()["entry"]] == ["200 OK", "200 OK", "200 OK"]
    assert [e["response"]["location"] for e in second.json()["entry"]] == [
        e["response"]["location"] for e in first["entry"]
    ]
    assert (_count(api, "Patient"), _count(api, "Observation"), _count(api, "DiagnosticReport")) == counts


def test_a_correction_is_a_new_version_of_the_same_report(api: Api) -> None:
    mrn, number = unique("A"), unique("R")
    bundle = _lab_bundle("hosp-a", mrn, resident_id(103), number)
    api.post("/fhir", bundle, who="hosp-a-system")
    bundle["entry"][2]["resource"]["status"] = "corrected"
    r = api.post("/fhir", bundle, who="hosp-a-system").json()
    loc = r["entry"][2]["response"]["location"]
    assert loc.endswith("/_history/2")
    report = api.get(f"/fhir/{loc.split('/_history')[0]}").json()
    assert report["status"] == "corrected"
    bundle["entry"][2]["resource"]["status"] = "entered-in-error"
    api.post("/fhir", bundle, who="hosp-a-system")
    found = api.get("/fhir/DiagnosticReport", params={"identifier": f"http://hosp-a.example/report|{number}"}).json()
    assert found["entry"][0]["resource"]["status"] == "entered-in-error"
    assert found["entry"][0]["resource"]["meta"]["versionId"] == "3"


def test_a_transaction_failing_midway_leaves_nothing_behind(api: Api) -> None:
    mrn, number = unique("A"), unique("R")
    bundle = _lab_bundle("hosp-a", mrn, resident_id(104), number)
    bundle["entry"][2]["resource"]["status"] = "not-a-status"
    before = (_count(api, "Patient"), _count(api, "Observation"), _count(api, "DiagnosticReport"))
    r = api.post("/fhir", bundle, who="hosp-a-system")
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert "Bundle.entry[2]" in issue["expression"][0]
    assert (_count(api, "Patient"), _count(api, "Observation"), _count(api, "DiagnosticReport")) == before
    assert _count(api, "Patient", identifier=f"http://hosp-a.example/mrn|{mrn}") == 0


def test_a_transaction_failing_on_its_last_write_leaves_nothing_behind(api: Api) -> None:
    # The report names another hospital as performer: refused after the Patient and Observation were prepared.
    mrn, number = unique("A"), unique("R")
    bundle = _lab_bundle("hosp-a", mrn, resident_id(105), number)
    bundle["entry"][2]["resource"]["performer"] = [{"reference": "Organization/hosp-b"}]
    r = api.post("/fhir", bundle, who="hosp-a-system")
    assert r.status_code == 403
    assert _count(api, "Patient", identifier=f"http://hosp-a.example/mrn|{mrn}") == 0
    assert _count(api, "Observation", identifier=f"http://hosp-a.example/obs|{number}-1") == 0


def test_conditional_reference_in_a_transaction(api: Api) -> None:
    mrn = unique("A")
    api.patient("hosp-a", mrn, resident_id(106))
    number = unique("R")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    "resourceType": "DiagnosticReport",
                    "status": "final",
                    "code": {"text": "血常规"},
                    "identifier": [{"system": "http://hosp-a.example/report", "value": number}],
                    "subject": {"reference": f"Patient?identifier=http://hosp-a.example/mrn|{mrn}"},
                    "performer": [{"reference": "Organization/hosp-a"}],
                },
                "request": {"method": "POST", "url": "DiagnosticReport"},
            }
        ],
    }
    r = api.post("/fhir", bundle, who="hosp-a-system")
    assert r.status_code == 200, r.text
    bundle["entry"][0]["resource"]["subject"]["reference"] = "Patient?identifier=http://hosp-a.example/mrn|none"
    bundle["entry"][0]["resource"]["identifier"][0]["value"] = unique("R")
    r = api.post("/fhir", bundle, who="hosp-a-system")
    assert r.status_code == 412
    assert "matched 0" in r.json()["issue"][0]["diagnostics"]


def test_unknown_urn_uuid_reference_is_refused(api: Api) -> None:
    bundle = _lab_bundle("hosp-a", unique("A"), resident_id(107), unique("R"))
    bundle["entry"][2]["resource"]["result"] = [{"reference": "urn:uuid:99999999-9999-4999-8999-999999999999"}]
    r = api.post("/fhir", bundle, who="hosp-a-system")
    assert r.status_code == 422


def test_two_entries_with_one_identifier_are_refused(api: Api) -> None:
    bundle = _lab_bundle("hosp-a", unique("A"), resident_id(108), unique("R"))
    twin = dict(bundle["entry"][1])
    twin["fullUrl"] = "urn:uuid:44444444-4444-4444-8444-444444444444"
    twin["request"] = {"method": "POST", "url": "Observation"}
    bundle["entry"].append(twin)
    r = api.post("/fhir", bundle, who="hosp-a-system")
    assert r.status_code == 400
    assert "both carry" in r.json()["issue"][0]["diagnostics"]


def test_bundle_shape_errors(api: Api) -> None:
    assert api.post("/fhir", {"resourceType": "Patient"}).status_code == 400
    assert api.post("/fhir", {"resourceType": "Bundle", "type": "collection"}).status_code == 400
    bad_method = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Organization", "name": "x"},
                "request": {"method": "PATCH", "url": "Organization/x"},
            }
        ],
    }
    assert api.post("/fhir", bad_method).status_code == 400
    no_request = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": {"resourceType": "Organization"}}],
    }
    assert api.post("/fhir", no_request).status_code == 400


def test_batch_entries_succeed_or_fail_on_their_own(api: Api) -> None:
    name = unique("org")
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": {"resourceType": "Organization", "name": name},
                "request": {"method": "POST", "url": "Organization"},
            },
            {
                "resource": {"resourceType": "Organization", "name": 5},
                "request": {"method": "POST", "url": "Organization"},
            },
            {"request": {"method": "DELETE", "url": "Organization/does-not-exist"}},
        ],
    }
    r = api.post("/fhir", batch)
    assert r.status_code == 200
    body = r.json()
    assert body["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in body["entry"]]
    assert statuses[0] == "201 Created"
    assert statuses[1].startswith("400")
    assert body["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert statuses[2] == "204 No Content"
    assert _count(api, "Organization", name=name) == 1


def test_prefer_representation_returns_resources_in_the_response(api: Api) -> None:
    bundle = _lab_bundle("hosp-a", unique("A"), resident_id(109), unique("R"))
    r = api.post("/fhir", bundle, who="hosp-a-system", headers={"Prefer": "return=representation"})
    assert [e["resource"]["resourceType"] for e in r.json()["entry"]] == ["Patient", "Observation", "DiagnosticReport"]


def test_conditional_create_with_if_none_exist(api: Api) -> None:
    org_name = unique("org")
    ident = {"system": "https://hr-registry.org.cn/fhir/sid/org-code", "value": unique("C")}
    body = {"resourceType": "Organization", "name": org_name, "identifier": [ident]}
    cond = {"If-None-Exist": f"identifier={ident['system']}|{ident['value']}"}
    first = api.post("/fhir/Organization", body, headers=cond)
    assert first.status_code == 201
    second = api.post("/fhir/Organization", body, headers=cond)
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    # two matches → 412
    api.post("/fhir/Organization", {"resourceType": "Organization", "name": org_name + "-2"})
    r = api.post("/fhir/Organization", body, headers={"If-None-Exist": f"name={org_name}"})
    assert r.status_code == 412


def test_conditional_update_by_identifier(api: Api) -> None:
    ident = {"system": "https://hr-registry.org.cn/fhir/sid/org-code", "value": unique("U")}
    query = f"identifier={ident['system']}|{ident['value']}"
    r = api.put(f"/fhir/Organization?{query}", {"resourceType": "Organization", "name": "v1", "identifier": [ident]})
    assert r.status_code == 201
    rid = r.json()["id"]
    r = api.put(f"/fhir/Organization?{query}", {"resourceType": "Organization", "name": "v2", "identifier": [ident]})
    assert r.status_code == 200
    assert r.json()["id"] == rid
    assert r.json()["meta"]["versionId"] == "2"
    assert api.put("/fhir/Organization", {"resourceType": "Organization", "name": "x"}).status_code == 400


def test_a_conditional_update_carrying_another_resources_identifier_is_a_clear_conflict(api: Api) -> None:
    """The condition names a new report, but the body also carries an identifier of an existing one: a 409 that
    says so (not a "retry" answer: retrying would never succeed)."""
    first = {"system": "https://hr-registry.org.cn/fhir/sid/org-code", "value": unique("C")}
    second = {"system": "https://hr-registry.org.cn/fhir/sid/org-code", "value": unique("C")}
    assert (
        api.put(
            f"/fhir/Organization?identifier={first['system']}|{first['value']}",
            {"resourceType": "Organization", "name": "one", "identifier": [first]},
        ).status_code
        == 201
    )
    r = api.put(
        f"/fhir/Organization?identifier={second['system']}|{second['value']}",
        {"resourceType": "Organization", "name": "two", "identifier": [second, first]},
    )
    assert r.status_code == 409, r.text
    text = r.json()["issue"][0]["diagnostics"]
    assert first["value"] in text and "names one resource" in text


def test_a_repeated_create_answers_the_existing_resource_and_a_different_one_conflicts(api: Api) -> None:
    p = api.patient("hosp-a", unique("A"), resident_id(110))
    number = unique("R")
    first = api.report("hosp-a", p["id"], number)
    again = api.post(
        "/fhir/DiagnosticReport", {k: v for k, v in first.items() if k not in ("id", "meta")}, who="hosp-a-system"
    )
    assert again.status_code == 200
    assert again.json()["id"] == first["id"]
    changed = {k: v for k, v in first.items() if k not in ("id", "meta")}
    changed["conclusion"] = "different"
    conflict = api.post("/fhir/DiagnosticReport", changed, who="hosp-a-system")
    assert conflict.status_code == 409
    assert "PUT DiagnosticReport?identifier=" in conflict.json()["issue"][0]["diagnostics"]
    assert _count(api, "DiagnosticReport", identifier=f"http://hosp-a.example/report|{number}") == 1


def test_a_new_report_listing_a_result_sent_again_by_post_refers_to_the_stored_result(api: Api) -> None:
    """A transaction POSTs an Observation the registry already holds (same identifier, same content: a repeat,
    answered with the stored one) and a new report listing it by its fullUrl: the report must refer to the stored
    Observation, not to an id that was never written."""
    p = api.patient("hosp-a", unique("A"), resident_id(111))
    number = unique("R")
    observation = {
        "resourceType": "Observation",
        "identifier": [{"system": "http://hosp-a.example/obs", "value": f"{number}-1"}],
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "subject": {"reference": f"Patient/{p['id']}"},
        "effectiveDateTime": "2025-03-01T08:00:00+08:00",
        "valueQuantity": {"value": 131, "unit": "g/L"},
        "performer": [{"reference": "Organization/hosp-a"}],
    }

    def bundle(report_no: str, full_url: str) -> dict[str, Any]:
        report = {
            "resourceType": "DiagnosticReport",
            "identifier": [{"system": "http://hosp-a.example/report", "value": report_no}],
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
            "subject": {"reference": f"Patient/{p['id']}"},
            "effectiveDateTime": "2025-03-01T08:00:00+08:00",
            "performer": [{"reference": "Organization/hosp-a"}],
            "result": [{"reference": full_url}],
        }
        return {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": full_url, "resource": observation, "request": {"method": "POST", "url": "Observation"}},
            {"fullUrl": "urn:uuid:" + unique("r"), "resource": report,
             "request": {"method": "POST", "url": "DiagnosticReport"}},
        ]}  # fmt: skip

    first = api.post("/fhir", bundle(number, "urn:uuid:aaaaaaaa-0000-4000-8000-000000000001"), who="hosp-a-system")
    assert first.status_code == 200, first.text
    stored = first.json()["entry"][0]["response"]["location"].split("/")[1]
    second = api.post(
        "/fhir", bundle(f"{number}-b", "urn:uuid:aaaaaaaa-0000-4000-8000-000000000002"), who="hosp-a-system"
    )
    assert second.status_code == 200, second.text
    entries = second.json()["entry"]
    assert [e["response"]["status"] for e in entries] == ["200 OK", "201 Created"]
    assert entries[0]["response"]["location"].split("/")[1] == stored
    report = api.get(f"/fhir/{entries[1]['response']['location'].split('/_history')[0]}").json()
    assert report["result"] == [{"reference": f"Observation/{stored}"}]
    listed = api.get("/fhir/DiagnosticReport", params={"result": f"Observation/{stored}"}).json()
    assert len(listed.get("entry", [])) == 2
    # the first Bundle again, all POSTs: the report repeats too once it names the stored Observation
    again = api.post("/fhir", bundle(number, "urn:uuid:aaaaaaaa-0000-4000-8000-000000000003"), who="hosp-a-system")
    assert again.status_code == 200, again.text
    assert [e["response"]["status"] for e in again.json()["entry"]] == ["200 OK", "200 OK"]
    assert [e["response"]["location"] for e in again.json()["entry"]] == [
        e["response"]["location"] for e in first.json()["entry"]
    ]
    # a report naming the re-sent Observation by its identifier (a conditional reference) refers to the stored one
    conditional = bundle(f"{number}-c", "urn:uuid:aaaaaaaa-0000-4000-8000-000000000004")
    conditional["entry"][1]["resource"]["result"] = [
        {"reference": f"Observation?identifier=http://hosp-a.example/obs|{number}-1"}
    ]
    by_identifier = api.post("/fhir", conditional, who="hosp-a-system")
    assert by_identifier.status_code == 200, by_identifier.text
    report = api.get(f"/fhir/{by_identifier.json()['entry'][1]['response']['location'].split('/_history')[0]}")
    assert report.json()["result"] == [{"reference": f"Observation/{stored}"}]
    assert api.ctx.administration.check().clean


def test_a_repeat_learnt_by_an_earlier_attempt_is_decided_afresh_when_the_stored_resource_changed(api: Api) -> None:
    """The next attempt takes the entry for the stored resource only while it still is the same: changed in
    between, the attempt is run again without that knowledge (and the entry is then decided as any POST)."""
    p = api.patient("hosp-a", unique("A"), resident_id(112))
    stored = api.report("hosp-a", p["id"], unique("R"))
    changed = {k: v for k, v in stored.items() if k not in ("id", "meta")} | {"conclusion": "changed"}
    hospital = Principal("hosp-a-system", PrincipalKind.HOSPITAL, parse_scopes("system/*.write"), "hosp-a")
    audit = AuditContext("test", hospital, "transaction")
    item = BundleItem(0, "POST", "DiagnosticReport", None, orjson.dumps(changed).decode(), None, None)
    with api.ctx.uow.begin() as repo:
        s = Session(repo, hospital, api.ctx.clock(), repeats={0: stored["id"], 3: "other"})
        with pytest.raises(RetryError) as raised:
            api.ctx.ingest.engine.apply(s, audit, [item])
    assert raised.value.repeats == {3: "other"}
    same = {k: v for k, v in stored.items() if k not in ("id", "meta")}
    item = BundleItem(0, "POST", "DiagnosticReport", None, orjson.dumps(same).decode(), None, None)
    with api.ctx.uow.begin() as repo:
        (done,) = api.ctx.ingest.engine.apply(Session(repo, hospital, api.ctx.clock(), repeats={0: stored["id"]}),
                                              audit, [item])  # fmt: skip
    assert done.status_text == "200 OK" and done.stored is not None and done.stored.id == stored["id"]


def test_an_entry_cap_answers_413(api: Api) -> None:
    limit = api.ctx.settings.max_bundle_entries
    entries = [
        {
            "resource": {"resourceType": "Organization", "name": "x"},
            "request": {"method": "POST", "url": "Organization"},
        }
    ] * (limit + 1)
    r = api.post("/fhir", {"resourceType": "Bundle", "type": "batch", "entry": entries})
    assert r.status_code == 413
    assert r.json()["issue"][0]["code"] == "too-costly"


def test_a_create_with_search_parameters_in_the_url_is_a_conditional_create(api: Api) -> None:
    """fhirpy's ``get_or_create`` sends ``POST /fhir/Patient?identifier=…``: the parameters are the condition, as
    If-None-Exist would carry them — found: 200 with the match, nothing created; none: 201; several: 412."""
    mrn = {"system": "http://hosp-a.example/mrn", "value": unique("GOC")}
    body = {"resourceType": "Patient", "identifier": [mrn, {"system": NATIONAL, "value": resident_id(777)}],
            "managingOrganization": {"reference": "Organization/hosp-a"}}  # fmt: skip
    url = f"/fhir/Patient?identifier={mrn['system']}|{mrn['value']}"
    first = api.post(url, body, who="hosp-a-system")
    assert first.status_code == 201, first.text
    again = api.post(url, body, who="hosp-a-system")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    found = api.get("/fhir/Patient", params={"identifier": f"{mrn['system']}|{mrn['value']}"}).json()
    assert len(found["entry"]) == 1  # no duplicate
    # _format is not a condition; the same condition in both places is fine, two different ones are not
    assert api.post(f"{url}&_format=json", body, who="hosp-a-system").status_code == 200
    same = {"If-None-Exist": f"identifier={mrn['system']}|{mrn['value']}"}
    assert api.post(url, body, who="hosp-a-system", headers=same).status_code == 200
    r = api.post(url, body, who="hosp-a-system", headers={"If-None-Exist": "identifier=http://hosp-a.example/mrn|x"})
    assert r.status_code == 400 and "two different conditions" in r.text
    # an unknown parameter in a condition is refused, never ignored (it would match everything)
    r = api.post("/fhir/Patient?colour=blue", body, who="hosp-a-system")
    assert r.status_code == 400, r.text
    org = unique("org")
    for n in (1, 2):
        api.post("/fhir/Organization", {"resourceType": "Organization", "name": org, "alias": [str(n)]})
    r = api.post(f"/fhir/Organization?name={org}", {"resourceType": "Organization", "name": org})
    assert r.status_code == 412


def test_get_entries_in_a_transaction_run_last_and_see_its_writes(api: Api) -> None:
    """R4 http.html §3.1.0.11.2: DELETE, POST, PUT/PATCH, then GET — a GET listed first still reads what the
    Bundle writes; the response keeps the Bundle's order."""
    mrn, number = unique("T"), unique("R")
    bundle = _lab_bundle("hosp-a", mrn, resident_id(811), number)
    by_number = f"DiagnosticReport?identifier=http://hosp-a.example/report|{number}"
    by_mrn = f"Patient?identifier=http://hosp-a.example/mrn|{mrn}&_summary=count"
    gets = [{"request": {"method": "GET", "url": by_number}}, {"request": {"method": "GET", "url": by_mrn}}]
    bundle["entry"] = [*gets, *bundle["entry"]]
    r = api.post("/fhir", bundle, who="hosp-a-system")
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses == ["200 OK", "200 OK", "201 Created", "201 Created", "201 Created"]
    found = answer["entry"][0]["resource"]
    assert found["type"] == "searchset"
    assert [e["resource"]["identifier"][0]["value"] for e in found["entry"]] == [number]
    assert answer["entry"][1]["resource"]["total"] == 1
    report_id = answer["entry"][4]["response"]["location"].split("/")[1]
    # read and vread entries; a GET of what the same transaction deletes is 410 and fails it whole
    reads = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": f"DiagnosticReport/{report_id}"}},
        {"request": {"method": "GET", "url": f"DiagnosticReport/{report_id}/_history/1?_elements=status"}},
    ]}  # fmt: skip
    answer = api.post("/fhir", reads, who="hosp-a-system").json()
    assert answer["entry"][0]["resource"]["id"] == report_id
    assert answer["entry"][0]["response"]["etag"] == 'W/"1"'
    assert set(answer["entry"][1]["resource"]) == {"resourceType", "id", "meta", "status", "code"}
    gone = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": f"DiagnosticReport/{report_id}"}},
        {"request": {"method": "DELETE", "url": f"DiagnosticReport/{report_id}"}}]}  # fmt: skip
    r = api.post("/fhir", gone, who="hosp-a-system")
    assert r.status_code == 410 and "Bundle.entry[0]" in r.text, r.text
    assert api.get(f"/fhir/DiagnosticReport/{report_id}").status_code == 200  # the delete was rolled back


def test_get_entries_in_a_batch_answer_on_their_own(api: Api) -> None:
    p = api.patient("hosp-a", unique("A"), resident_id(812))
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Patient/{p['id']}"}},
        {"request": {"method": "GET", "url": "Patient/nobody"}},
        {"request": {"method": "GET", "url": f"http://testserver/fhir/Patient?_id={p['id']}"}},
        {"request": {"method": "GET", "url": f"Patient/{p['id']}/_history"}},
        {"request": {"method": "GET", "url": "Patient?birthdate=yesterday"}}]}  # fmt: skip
    r = api.post("/fhir", bundle, who="hosp-a-system")
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert [e["response"]["status"].split()[0] for e in entries] == ["200", "404", "200", "400", "400"]
    assert entries[0]["resource"]["id"] == p["id"] and entries[0]["fullUrl"].endswith(f"/Patient/{p['id']}")
    assert [e["resource"]["id"] for e in entries[2]["resource"]["entry"]] == [p["id"]]
    assert entries[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
