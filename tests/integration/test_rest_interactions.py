"""FHIR R4 RESTful interactions: create, read, vread, update (If-Match), history, delete — and their errors."""

from __future__ import annotations

import orjson
from sqlalchemy import text

from registry.fhir.models import OperationOutcome
from tests.integration.conftest import Api, resident_id, unique


def _outcome(r) -> OperationOutcome:  # type: ignore[no-untyped-def]
    assert r.headers["content-type"].startswith("application/fhir+json"), r.headers
    return OperationOutcome.model_validate(r.json())


def test_create_answers_201_with_location_etag_and_meta(api: Api) -> None:
    p = api.patient("hosp-a", unique("A"), resident_id(1))
    r = api.get(f"/fhir/Patient/{p['id']}")
    assert r.status_code == 200
    assert r.headers["etag"] == 'W/"1"'
    assert "last-modified" in r.headers
    body = r.json()
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"].endswith("Z")


def test_create_location_header(api: Api) -> None:
    mrn = unique("A")
    body = {
        "resourceType": "Patient",
        "identifier": [
            {"system": "http://hosp-a.example/mrn", "value": mrn},
            {"system": "https://hr-registry.org.cn/fhir/sid/cn-resident-id", "value": resident_id(2)},
        ],
        "managingOrganization": {"reference": "Organization/hosp-a"},
    }
    r = api.post("/fhir/Patient", body, who="hosp-a-system")
    assert r.status_code == 201
    rid = r.json()["id"]
    assert r.headers["location"] == f"http://testserver/fhir/Patient/{rid}/_history/1"
    assert r.headers["etag"] == 'W/"1"'


def test_accepted_bytes_are_kept_not_reserialized(api: Api) -> None:
    p = api.patient("hosp-a", unique("A"), resident_id(3))
    text = (
        '{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org",'
        '"code":"718-7"}]},"subject":{"reference":"Patient/' + p["id"] + '"},'
        '"valueQuantity":{"value":135.50,"unit":"g/L"},"performer":[{"reference":"Organization/hosp-a"}],'
        '"note":[{"text":"1.50 mmol/L \\u6837\\u672c"}]}'
    )
    r = api.post("/fhir/Observation", text, who="hosp-a-system")
    assert r.status_code == 201, r.text
    stored = api.get(f"/fhir/Observation/{r.json()['id']}").text
    assert '"value":135.50' in stored  # the decimal keeps its precision
    assert "\\u6837\\u672c" in stored  # escapes as sent


def test_vread_and_history(api: Api) -> None:
    p = api.patient("hosp-a", unique("A"), resident_id(4))
    rid = p["id"]
    p2 = dict(p)
    p2["gender"] = "male"
    r = api.put(f"/fhir/Patient/{rid}", p2, who="hosp-a-system")
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["versionId"] == "2"
    v1 = api.get(f"/fhir/Patient/{rid}/_history/1")
    assert v1.status_code == 200
    assert v1.json()["gender"] == "female"
    assert v1.headers["etag"] == 'W/"1"'
    hist = api.get(f"/fhir/Patient/{rid}/_history").json()
    assert hist["type"] == "history"
    assert hist["total"] == 2
    assert [e["resource"]["meta"]["versionId"] for e in hist["entry"]] == ["2", "1"]
    assert hist["entry"][1]["request"]["method"] == "POST"
    assert api.get(f"/fhir/Patient/{rid}/_history/9").status_code == 404
    assert api.get(f"/fhir/Patient/{rid}/_history/x").status_code == 404


def test_update_with_if_match(api: Api) -> None:
    p = api.patient("hosp-a", unique("A"), resident_id(5))
    rid = p["id"]
    p["gender"] = "other"
    stale = api.put(f"/fhir/Patient/{rid}", p, who="hosp-a-system", headers={"If-Match": 'W/"7"'})
    assert stale.status_code == 412
    assert _outcome(stale).issue[0].code == "conflict"
    ok = api.put(f"/fhir/Patient/{rid}", p, who="hosp-a-system", headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200
    assert ok.headers["etag"] == 'W/"2"'


def test_update_with_unchanged_content_makes_no_new_version(api: Api) -> None:
    p = api.patient("hosp-a", unique("A"), resident_id(6))
    again = api.put(f"/fhir/Patient/{p['id']}", p, who="hosp-a-system")
    assert again.status_code == 200
    assert again.json()["meta"]["versionId"] == "1"


def test_update_creates_with_a_client_assigned_id(api: Api) -> None:
    rid = unique("org")
    r = api.put(f"/fhir/Organization/{rid}", {"resourceType": "Organization", "id": rid, "name": "新机构"})
    assert r.status_code == 201
    assert r.headers["location"].endswith(f"/Organization/{rid}/_history/1")


def test_update_id_mismatch_and_bad_id(api: Api) -> None:
    r = api.put("/fhir/Organization/abc", {"resourceType": "Organization", "id": "xyz", "name": "x"})
    assert r.status_code == 400
    r = api.put("/fhir/Organization/bad_id!", {"resourceType": "Organization", "name": "x"})
    assert r.status_code == 400


def test_an_update_without_an_id_in_the_body_is_400_and_writes_nothing(api: Api) -> None:
    """R4 http.html §3.1.0.4: the body SHALL carry an id identical to the URL's; with none, or another, 400."""
    rid = unique("org")
    r = api.put(f"/fhir/Organization/{rid}", {"resourceType": "Organization", "name": "无 id"})
    assert r.status_code == 400, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "id" in outcome["issue"][0]["diagnostics"] and outcome["issue"][0]["expression"] == ["Organization.id"]
    assert api.get(f"/fhir/Organization/{rid}").status_code == 404  # not created
    assert (
        api.put(f"/fhir/Organization/{rid}", {"resourceType": "Organization", "id": rid, "name": "一"}).status_code
        == 201
    )
    for body in (
        {"resourceType": "Organization", "name": "二"},
        {"resourceType": "Organization", "id": "other", "name": "二"},
    ):
        assert api.put(f"/fhir/Organization/{rid}", body).status_code == 400
    current = api.get(f"/fhir/Organization/{rid}").json()
    assert current["meta"]["versionId"] == "1" and current["name"] == "一"  # no new version
    # the same rule for a PUT entry of a transaction (the same interaction, bundle.html §3.1.0.11)
    entry = {"resource": {"resourceType": "Organization", "name": "三"},
             "request": {"method": "PUT", "url": f"Organization/{rid}"}}  # fmt: skip
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    r = api.post("/fhir", bundle)
    assert r.status_code == 400 and "Bundle.entry[0]" in r.text, r.text
    assert api.get(f"/fhir/Organization/{rid}").json()["meta"]["versionId"] == "1"


def test_delete_then_read_is_gone_and_history_keeps_it(api: Api) -> None:
    p = api.patient("hosp-a", unique("A"), resident_id(7))
    rid = p["id"]
    r = api.delete(f"/fhir/Patient/{rid}", who="hosp-a-system")
    assert r.status_code == 204
    assert r.headers["etag"] == 'W/"2"'
    gone = api.get(f"/fhir/Patient/{rid}")
    assert gone.status_code == 410
    assert _outcome(gone).issue[0].code == "deleted"
    hist = api.get(f"/fhir/Patient/{rid}/_history").json()
    assert [e["request"]["method"] for e in hist["entry"]] == ["DELETE", "POST"]
    assert api.delete(f"/fhir/Patient/{rid}", who="hosp-a-system").status_code == 204  # idempotent
    # deleting releases the business identifier for a new resource
    assert api.get(f"/fhir/Patient/{rid}/_history/1").status_code == 200


def test_unknown_resource_and_type(api: Api) -> None:
    r = api.get("/fhir/Patient/does-not-exist")
    assert r.status_code == 404
    assert _outcome(r).issue[0].code == "not-found"
    r = api.get("/fhir/Medication/1")
    assert r.status_code == 404
    r = api.post("/fhir/Medication", {"resourceType": "Medication"})
    assert r.status_code == 404


def test_malformed_bodies_are_400_and_change_nothing(api: Api) -> None:
    before = api.get("/fhir/Organization", params={"_summary": "count"}).json()["total"]
    for body in ("{not json", "[1,2]", '"text"', '{"resourceType":"Patient"}'):
        r = api.post("/fhir/Organization", body)
        assert r.status_code == 400, (body, r.text)
        assert _outcome(r).issue
    r = api.post("/fhir/Organization", {"resourceType": "Organization", "name": 12, "bogus": True})
    assert r.status_code == 400
    oo = _outcome(r)
    assert len(oo.issue) >= 2
    assert {i.expression[0] for i in oo.issue} >= {"Organization.name", "Organization.bogus"}
    assert api.get("/fhir/Organization", params={"_summary": "count"}).json()["total"] == before


def test_required_bindings_are_checked(api: Api) -> None:
    p = api.patient("hosp-a", unique("A"), resident_id(8))
    r = api.post(
        "/fhir/DiagnosticReport",
        {
            "resourceType": "DiagnosticReport",
            "status": "done",
            "code": {"text": "x"},
            "subject": {"reference": f"Patient/{p['id']}"},
            "performer": [{"reference": "Organization/hosp-a"}],
        },
        who="hosp-a-system",
    )
    assert r.status_code == 400
    assert "required value set" in r.text
    r = api.post(
        "/fhir/Organization",
        {"resourceType": "Organization", "name": "x", "identifier": [{"use": "weird", "system": "s", "value": "v"}]},
    )
    assert r.status_code == 400


def test_references_must_resolve(api: Api) -> None:
    p = api.patient("hosp-a", unique("A"), resident_id(9))
    r = api.post(
        "/fhir/DiagnosticReport",
        {
            "resourceType": "DiagnosticReport",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": f"Patient/{p['id']}"},
            "performer": [{"reference": "Organization/hosp-a"}],
            "result": [{"reference": "Observation/nope"}],
        },
        who="hosp-a-system",
    )
    assert r.status_code == 422
    assert "Observation/nope" in _outcome(r).issue[0].diagnostics


def test_a_report_for_an_unknown_patient_is_rejected(api: Api) -> None:
    for subject in ({"reference": "Patient/nobody"}, None, {"display": "张三"}):
        body = {
            "resourceType": "DiagnosticReport",
            "status": "final",
            "code": {"text": "x"},
            "performer": [{"reference": "Organization/hosp-a"}],
        }
        if subject is not None:
            body["subject"] = subject
        r = api.post("/fhir/DiagnosticReport", body, who="hosp-a-system")
        assert r.status_code == 422, r.text
        assert "Patient" in _outcome(r).issue[0].diagnostics


def test_resource_type_must_match_the_url(api: Api) -> None:
    r = api.post("/fhir/Patient", {"resourceType": "Organization", "name": "x"})
    assert r.status_code == 400


def test_content_type_must_be_json(api: Api) -> None:
    r = api.client.post(
        "/fhir/Organization",
        content=orjson.dumps({"resourceType": "Organization", "name": "x"}),
        headers={**api.headers("admin"), "Content-Type": "application/xml"},
    )
    assert r.status_code == 415


def test_prefer_return_minimal_and_operation_outcome(api: Api) -> None:
    body = {"resourceType": "Organization", "name": unique("org")}
    r = api.post("/fhir/Organization", body, headers={"Prefer": "return=minimal"})
    assert r.status_code == 201
    assert r.content == b""
    assert r.headers["location"]
    r = api.post(
        "/fhir/Organization",
        {"resourceType": "Organization", "name": unique("org")},
        headers={"Prefer": "return=OperationOutcome"},
    )
    assert r.json()["resourceType"] == "OperationOutcome"


def test_conditional_read_with_if_none_match(api: Api) -> None:
    p = api.patient("hosp-a", unique("A"), resident_id(10))
    r = api.get(f"/fhir/Patient/{p['id']}", headers={"If-None-Match": 'W/"1"'})
    assert r.status_code == 304


def test_head_answers_read_vread_and_search_like_get_without_a_body(api: Api) -> None:
    """RFC 9110 §9.3.2 / R4 http.html: HEAD is the GET — same status and headers — without the content."""
    p = api.patient("hosp-a", unique("A"), resident_id(901))
    for path, params in ((f"/fhir/Patient/{p['id']}", {}), (f"/fhir/Patient/{p['id']}/_history/1", {}),
                         ("/fhir/Patient", {"_id": p["id"]}), ("/fhir/Patient/nobody", {}),
                         ("/fhir/metadata", {})):  # fmt: skip
        got = api.get(path, params=params)
        head = api.client.head(path, params=params, headers=api.headers("admin"))
        assert head.status_code == got.status_code, path
        assert head.content == b"", path
        for name in ("content-type", "etag", "last-modified"):
            assert head.headers.get(name) == got.headers.get(name), (path, name)
        if path != "/fhir/Patient":  # a searchset's id and timestamp differ from one request to the next
            assert head.headers["content-length"] == str(len(got.content)), path
    # refused like the GET, and audited as the read it is
    rid = {"X-Request-Id": unique("head").replace("-", "")}
    r = api.client.head(f"/fhir/Patient/{p['id']}", headers=api.headers("dr-c", **rid))
    assert r.status_code == 403 and r.content == b""
    with api.ctx.engine.connect() as conn:
        rows = conn.execute(text("SELECT action, status FROM audit_event WHERE request_id = :r"),
                            {"r": rid["X-Request-Id"]}).all()  # fmt: skip
    assert [tuple(row) for row in rows] == [("R", 403)]


def test_a_fhir_version_other_than_r4_is_406(api: Api) -> None:
    """R4 http.html §3.1.0.1.11: the fhirVersion parameter of a media type names the version wanted; the registry
    answers only R4 (4.0) and says so with 406 (R4 leaves the code open)."""
    ok = ("application/fhir+json; fhirVersion=4.0", "application/fhir+json;fhirVersion=4.0.1", "application/fhir+json",
          "application/fhir+json; fhirVersion=3.0, application/fhir+json; fhirVersion=4.0", "*/*")  # fmt: skip
    for accept in ok:
        assert api.get("/fhir/metadata", headers={"Accept": accept}).status_code == 200, accept
        assert api.get("/fhir/Patient", headers={"Accept": accept}).status_code == 200, accept
    for accept in ("application/fhir+json; fhirVersion=3.0", "application/fhir+json; fhirversion=4.3",
                   "application/json; fhirVersion=5.0"):  # fmt: skip
        for path in ("/fhir/metadata", "/fhir/Patient"):
            r = api.get(path, headers={"Accept": accept})
            assert r.status_code == 406, (path, accept, r.text)
            assert r.json()["resourceType"] == "OperationOutcome" and "R4" in r.text
    assert api.get("/fhir/Patient", params={"_format": "application/fhir+json;fhirVersion=4.3"}).status_code == 406
    assert api.get("/fhir/Patient", params={"_format": "application/fhir+json;fhirVersion=4.0"}).status_code == 200
