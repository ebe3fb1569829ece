"""``_summary`` and ``_elements`` on read, vread and search (FHIR R4 search.html §3.1.1.5.8–9): which elements are
returned, the ``SUBSETTED`` tag, the stored text kept for what is returned, ``_summary=count``, and the values that
are refused."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from tests.integration.conftest import Api, new_resident_id, unique

SUBSETTED = ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "SUBSETTED")
LOINC = "http://loinc.org"
DCM = "http://dicom.nema.org/resources/ontology/DCM"


def _tagged(resource: dict[str, Any]) -> bool:
    return any((t.get("system"), t.get("code")) == SUBSETTED for t in resource.get("meta", {}).get("tag", []))


@pytest.fixture(scope="module")
def data(api: Api) -> dict[str, str]:
    patient = api.patient("hosp-a", unique("A"), new_resident_id())["id"]
    observation = (
        '{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org",'
        '"code":"2345-7"}]},"subject":{"reference":"Patient/' + patient + '"},"effectiveDateTime":"2026-03-01",'
        '"valueQuantity":{"value":135.50,"unit":"mg/dL"},"note":[{"text":"fasting"}],'
        '"text":{"status":"generated","div":"<div xmlns=\\"http://www.w3.org/1999/xhtml\\">glucose</div>"}}'
    )
    r = api.post("/fhir/Observation", observation, who="hosp-a-system")
    assert r.status_code == 201, r.text
    report = api.report(
        "hosp-a", patient, unique("R"), result=[{"reference": f"Observation/{r.json()['id']}"}],
        conclusion="正常", text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">CBC</div>'},
    )  # fmt: skip
    uid = f"2.25.{uuid.uuid4().int}"
    study = {
        "resourceType": "ImagingStudy", "status": "available", "subject": {"reference": f"Patient/{patient}"},
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}], "description": "CT chest",
        "series": [{"uid": f"{uid}.1", "modality": {"system": DCM, "code": "CT"},
                    "instance": [{"uid": f"{uid}.1.1", "sopClass": {"system": "urn:ietf:rfc:3986",
                                                                   "code": "urn:oid:1.2.840.10008.5.1.4.1.1.2"}}]}],
    }  # fmt: skip
    s = api.post("/fhir/ImagingStudy", study, who="hosp-a-system")
    assert s.status_code == 201, s.text
    return {"patient": patient, "observation": r.json()["id"], "report": report["id"], "study": s.json()["id"]}


def _read(api: Api, path: str, **params: str) -> dict[str, Any]:
    r = api.get(path, params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_read_with_summary_true_text_data_false(api: Api, data: dict[str, str]) -> None:
    path = f"/fhir/DiagnosticReport/{data['report']}"
    whole = _read(api, path)
    assert not _tagged(whole)
    summary = _read(api, path, _summary="true")
    assert _tagged(summary)
    # DiagnosticReport: status, category, code, subject, effective, issued, performer, identifier are summary;
    # text, result and conclusion are not
    assert {"status", "code", "subject", "effectiveDateTime", "issued", "performer", "identifier"} <= set(summary)
    assert not {"text", "result", "conclusion"} & set(summary)
    assert summary["id"] == whole["id"] and summary["meta"]["versionId"] == whole["meta"]["versionId"]
    text = _read(api, path, _summary="text")
    assert set(text) == {"resourceType", "id", "meta", "text", "status", "code"} and _tagged(text)
    data_only = _read(api, path, _summary="data")
    assert set(data_only) == set(whole) - {"text"} and _tagged(data_only)
    assert _read(api, path, _summary="false") == whole
    # vread too
    assert _tagged(_read(api, f"{path}/_history/1", _summary="true"))


def test_summary_true_filters_backbone_elements(api: Api, data: dict[str, str]) -> None:
    study = _read(api, f"/fhir/ImagingStudy/{data['study']}", _summary="true")
    assert study["series"][0]["uid"] and study["series"][0]["modality"]["code"] == "CT"
    assert "instance" not in study["series"][0]  # ImagingStudy.series.instance is not a summary element
    assert "description" in study


def test_elements_keeps_the_named_the_mandatory_and_the_stored_text(api: Api, data: dict[str, str]) -> None:
    r = api.get(f"/fhir/Observation/{data['observation']}", params={"_elements": "value,effective"})
    assert r.status_code == 200
    assert '"value":135.50' in r.text  # cut from the stored text, not re-serialized
    got = r.json()
    assert set(got) == {"resourceType", "id", "meta", "status", "code", "valueQuantity", "effectiveDateTime"}
    assert _tagged(got)
    assert set(_read(api, f"/fhir/Observation/{data['observation']}", _elements="note,nonsense")) == {
        "resourceType", "id", "meta", "status", "code", "note"}  # fmt: skip


def test_search_with_summary_and_elements(api: Api, data: dict[str, str]) -> None:
    params = {"patient": data["patient"], "_summary": "true", "_include": "DiagnosticReport:result"}
    r = api.get("/fhir/DiagnosticReport", params=params)
    assert r.status_code == 200, r.text
    bundle = r.json()
    entries = [e["resource"] for e in bundle["entry"]]
    assert {e["resourceType"] for e in entries} == {"DiagnosticReport", "Observation"}
    assert all(_tagged(e) for e in entries)
    assert all("text" not in e for e in entries)
    self_link = next(link["url"] for link in bundle["link"] if link["relation"] == "self")
    assert ("_summary", "true") in parse_qsl(urlsplit(self_link).query)
    r = api.get("/fhir/DiagnosticReport", params={"patient": data["patient"], "_elements": "status"})
    assert r.status_code == 200, r.text
    (report,) = [e["resource"] for e in r.json()["entry"]]
    assert set(report) == {"resourceType", "id", "meta", "status", "code"} and _tagged(report)
    counted = api.get("/fhir/DiagnosticReport", params={"patient": data["patient"], "_summary": "count"}).json()
    assert counted["total"] == 1 and not counted.get("entry")


def test_values_that_are_not_taken_are_400(api: Api, data: dict[str, str]) -> None:
    path = f"/fhir/DiagnosticReport/{data['report']}"
    for where in (path, "/fhir/DiagnosticReport"):
        for params in ({"_summary": "maybe"}, {"_elements": "subject.reference"},
                       {"_summary": "true", "_elements": "status"}):  # fmt: skip
            for handling in ("strict", "lenient"):
                r = api.get(where, params=params, headers={"Prefer": f"handling={handling}"})
                assert r.status_code == 400, (where, params, r.text)
                assert orjson.loads(r.content)["resourceType"] == "OperationOutcome"
    assert api.get(path, params={"_summary": "count"}).status_code == 400
