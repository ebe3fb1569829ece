"""PATCH (FHIR R4 http.html §3.1.0.5): JSON Patch (RFC 6902) and FHIRPath Patch (R4 fhirpatch.html), ``If-Match``,
the result validated and written through the same path as an update (ownership, masking, the recognition index), in
transaction Bundles too (FHIRPath Patch Parameters, or a JSON Patch in a Binary), and the CapabilityStatement."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from tests.integration.conftest import NATIONAL, Api, new_resident_id, unique

JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def _nid() -> str:
    return new_resident_id()


def _patch(api: Api, path: str, body: Any, who: str = "hosp-a-system", **headers: str) -> Any:
    content = body if isinstance(body, (bytes, str)) else orjson.dumps(body)
    return api.client.patch(path, content=content, headers={**api.headers(who), **headers})


def _op(kind: str, path: str, **parts: Any) -> dict[str, Any]:
    items = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    items += [{"name": name, **value} for name, value in parts.items()]
    return {"name": "operation", "part": items}


def _fhirpath(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(operations)}


def _outcome(r: Any, status: int, *words: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    text = " ".join(i.get("diagnostics", "") for i in body["issue"])
    for word in words:
        assert word in text, (word, text)


def _report(api: Api) -> dict[str, Any]:
    p = api.patient("hosp-a", unique("A"), _nid())
    text = orjson.dumps({
        "resourceType": "DiagnosticReport", "status": "preliminary",
        "identifier": [{"system": "http://hosp-a.example/report", "value": unique("R")}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
        "subject": {"reference": f"Patient/{p['id']}"}, "effectiveDateTime": "2026-03-01T08:00:00+08:00",
        "performer": [{"reference": "Organization/hosp-a"}], "conclusion": "初步",
    }).decode()  # fmt: skip
    extension = '"extension":[{"url":"http://hosp-a.example/x","valueDecimal":1.50}]'
    text = text.replace('"status":"preliminary"', f'"status":"preliminary",{extension}')
    r = api.post("/fhir/DiagnosticReport", text, who="hosp-a-system")
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_json_patch_with_if_match_writes_a_new_version_keeping_the_untouched_bytes(api: Api) -> None:
    report = _report(api)
    path = f"/fhir/DiagnosticReport/{report['id']}"
    ops = [{"op": "test", "path": "/status", "value": "preliminary"}, {"op": "replace", "path": "/status",
           "value": "final"}, {"op": "add", "path": "/category", "value": [{"text": "LAB"}]}]  # fmt: skip
    _outcome(_patch(api, path, ops, **JSON_PATCH, **{"If-Match": 'W/"7"'}), 412, "If-Match")
    r = _patch(api, path, ops, **JSON_PATCH, **{"If-Match": 'W/"1"'})
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == 'W/"2"'
    got = r.json()
    assert got["status"] == "final" and got["category"] == [{"text": "LAB"}] and got["meta"]["versionId"] == "2"
    assert '"valueDecimal":1.50' in api.get(path).text  # the members the patch left alone keep their bytes
    # the same patch again: its test fails now → 422, nothing written
    _outcome(_patch(api, path, ops, **JSON_PATCH), 422, "does not apply")
    assert api.get(path).json()["meta"]["versionId"] == "2"
    # the result must be a valid resource of the same id
    _outcome(_patch(api, path, [{"op": "replace", "path": "/status", "value": "done"}], **JSON_PATCH), 400, "done")
    _outcome(_patch(api, path, [{"op": "replace", "path": "/id", "value": "other"}], **JSON_PATCH), 400, "other")
    _outcome(_patch(api, path, [{"op": "remove", "path": "/code"}], **JSON_PATCH), 400)
    _outcome(_patch(api, path, {"op": "replace"}, **JSON_PATCH), 400, "array")
    _outcome(_patch(api, path, ops, **{"Content-Type": "text/plain"}), 415)
    assert api.get(path).json()["meta"]["versionId"] == "2"


def test_fhirpath_patch_add_insert_delete_replace_move(api: Api) -> None:
    nid = _nid()
    p = api.patient("hosp-a", unique("A"), nid, name=[{"family": "张", "given": ["三"]}],
                    telecom=[{"system": "phone", "value": "1"}, {"system": "phone", "value": "2"}])  # fmt: skip
    path = f"/fhir/Patient/{p['id']}"
    patch = _fhirpath(
        _op("add", "Patient.name[0]", name={"valueString": "given"}, value={"valueString": "丰"}),
        _op("add", "Patient", name={"valueString": "active"}, value={"valueBoolean": True}),
        _op("add", "Patient", name={"valueString": "address"}, value={"part": [
            {"name": "city", "valueString": "北京"}, {"name": "line", "valueString": "长安街 1 号"}]}),
        _op("insert", "Patient.telecom", index={"valueInteger": 0}, value={"valueContactPoint": {
            "system": "email", "value": "z@example.cn"}}),
        _op("move", "Patient.telecom", source={"valueInteger": 2}, destination={"valueInteger": 1}),
        _op("replace", "Patient.gender", value={"valueCode": "male"}),
        _op("delete", "Patient.telecom[2]"),
        _op("delete", "Patient.deceasedBoolean"),  # not there: no change
    )  # fmt: skip
    r = _patch(api, path, patch)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["name"] == [{"family": "张", "given": ["三", "丰"]}]
    assert got["active"] is True and got["gender"] == "male"
    assert got["address"] == [{"city": "北京", "line": ["长安街 1 号"]}]  # address and line repeat (R4 definitions)
    assert [t["value"] for t in got["telecom"]] == ["z@example.cn", "2"]
    # the national identifier, masked in what is stored and served, still stands for the one on file
    assert any(i["system"] == NATIONAL and "*" in i["value"] for i in got["identifier"])
    found = api.get("/fhir/Patient", params={"identifier": f"{NATIONAL}|{nid}", "_id": p["id"]}).json()
    assert [e["resource"]["meta"]["versionId"] for e in found["entry"]] == ["2"]  # still indexed by its master key


def test_fhirpath_patch_refusals_are_clear(api: Api) -> None:
    p = api.patient("hosp-a", unique("A"), _nid(), name=[{"family": "李"}, {"family": "Li"}])
    path = f"/fhir/Patient/{p['id']}"
    cases = [
        (_fhirpath(_op("replace", "Patient.name.where(use='official').family", value={"valueString": "x"})), 422,
         "only simple paths"),
        (_fhirpath(_op("replace", "Patient.name.family", value={"valueString": "x"})), 422, "selects 2 elements"),
        (_fhirpath(_op("replace", "Patient.photo", value={"valueString": "x"})), 422, "selects 0 elements"),
        (_fhirpath(_op("add", "Patient", name={"valueString": "gender"}, value={"valueCode": "x"}),
                   _op("add", "Patient", name={"valueString": "gender"}, value={"valueCode": "y"})), 422, "already"),
        (_fhirpath(_op("insert", "Patient.name", index={"valueInteger": 5}, value={"valueHumanName": {}})), 422,
         "past the end"),
        (_fhirpath(_op("frobnicate", "Patient.name")), 400, "type must be"),
        (_fhirpath(_op("add", "Patient", value={"valueCode": "x"})), 400, "needs name"),
        ({"resourceType": "Patient"}, 400, "Parameters"),
    ]  # fmt: skip
    for body, status, words in cases:
        _outcome(_patch(api, path, body), status, words)
    assert api.get(path).json()["meta"]["versionId"] == "1"


def test_patch_is_decided_like_an_update(api: Api) -> None:
    """Only the owner patches (checked before the patch is applied: another hospital's test op learns nothing);
    an unknown resource is 404; a clinician may not write at all."""
    report = _report(api)
    path = f"/fhir/DiagnosticReport/{report['id']}"
    probe = [{"op": "test", "path": "/conclusion", "value": "初步"}]
    _outcome(_patch(api, path, probe, who="hosp-b-system", **JSON_PATCH), 403, "another organization")
    _outcome(_patch(api, path, [{"op": "test", "path": "/conclusion", "value": "x"}], who="hosp-b-system",
                    **JSON_PATCH), 403)  # fmt: skip
    assert _patch(api, path, probe, who="dr-b", **JSON_PATCH).status_code == 403
    _outcome(_patch(api, "/fhir/DiagnosticReport/nobody", probe, **JSON_PATCH), 404)
    assert _patch(api, path, probe, who="admin", **JSON_PATCH).status_code == 200  # unchanged: no new version
    assert api.get(path).json()["meta"]["versionId"] == "1"
    # a patch that names another hospital as performer is writing as it
    foreign = [{"op": "replace", "path": "/performer/0/reference", "value": "Organization/hosp-b"}]
    _outcome(_patch(api, path, foreign, **JSON_PATCH), 403, "Organization/hosp-b")


def test_patch_entries_in_a_transaction(api: Api) -> None:
    report = _report(api)
    ops = orjson.dumps([{"op": "replace", "path": "/conclusion", "value": "复核"}])
    binary = {"resourceType": "Binary", "contentType": "application/json-patch+json",
              "data": base64.b64encode(ops).decode()}  # fmt: skip
    fhirpath = _fhirpath(_op("replace", "DiagnosticReport.status", value={"valueCode": "final"}))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": binary, "request": {"method": "PATCH", "url": f"DiagnosticReport/{report['id']}"}},
        {"request": {"method": "GET", "url": f"DiagnosticReport/{report['id']}"}}]}  # fmt: skip
    r = api.post("/fhir", bundle, who="hosp-a-system")
    assert r.status_code == 200, r.text
    first, read = r.json()["entry"]
    assert first["response"]["status"] == "200 OK" and first["response"]["etag"] == 'W/"2"'
    assert read["resource"]["conclusion"] == "复核"  # the GET runs after the patch
    bundle["entry"] = [{"resource": fhirpath, "request": {"method": "PATCH", "url": f"DiagnosticReport/{report['id']}",
                                                          "ifMatch": 'W/"1"'}}]  # fmt: skip
    r = api.post("/fhir", bundle, who="hosp-a-system")
    assert r.status_code == 412 and "Bundle.entry[0]" in r.text, r.text
    bundle["entry"][0]["request"]["ifMatch"] = 'W/"2"'
    r = api.post("/fhir", bundle, who="hosp-a-system")
    assert r.status_code == 200, r.text
    assert api.get(f"/fhir/DiagnosticReport/{report['id']}").json()["status"] == "final"
    not_a_patch = {"resource": {"resourceType": "Patient"},
                   "request": {"method": "PATCH", "url": f"DiagnosticReport/{report['id']}"}}  # fmt: skip
    bad = {**bundle, "entry": [not_a_patch]}
    assert api.post("/fhir", bad, who="hosp-a-system").status_code == 400


def test_the_capability_statement_declares_patch(api: Api) -> None:
    """Every type the API writes declares patch; the read-only ones (a patient's Consent is written through the
    portal) do not."""
    statement = api.get("/fhir/metadata", who=None).json()
    assert statement["patchFormat"] == ["application/json-patch+json", "application/fhir+json"]
    for resource in statement["rest"][0]["resource"]:
        if resource["type"] not in ("CodeSystem", "AuditEvent", "OperationDefinition", "SearchParameter", "Consent"):
            assert {"code": "patch"} in resource["interaction"], resource["type"]


def _indexed(api: Api, rid: str) -> list[str]:
    from sqlalchemy import text

    with api.ctx.engine.connect() as conn:
        rows = conn.execute(text("SELECT status FROM result_index WHERE res_type = 'DiagnosticReport' AND res_id = :r"),
                            {"r": rid})  # fmt: skip
        return [r.status for r in rows]


def test_a_patch_maintains_the_recognition_index_like_an_update(api: Api) -> None:
    report = _report(api)
    path = f"/fhir/DiagnosticReport/{report['id']}"
    assert _indexed(api, report["id"]) == ["preliminary"]
    assert _patch(api, path, [{"op": "replace", "path": "/status", "value": "final"}], **JSON_PATCH).status_code == 200
    assert _indexed(api, report["id"]) == ["final"]
    withdraw = _fhirpath(_op("replace", "DiagnosticReport.status", value={"valueCode": "entered-in-error"}))
    assert _patch(api, path, withdraw).status_code == 200
    assert _indexed(api, report["id"]) == []  # an entered-in-error result governs nothing (docs/design.md §4)
