"""DiagnosticReports shaped like HL7's own R4 examples (https://hl7.org/fhir/R4/diagnosticreport-examples.html),
posted unchanged by a hospital: what the registry accepts, and what it refuses with which status and OperationOutcome.

The shapes follow the R4 examples element by element — narrative ``text``, business identifier, ``basedOn``,
``category``, ``code``, ``subject``, ``encounter``, ``effective[x]``, ``issued``, ``performer``,
``resultsInterpreter``, ``specimen``, ``result``, ``imagingStudy``, ``media``, ``conclusion``, ``conclusionCode``,
``presentedForm`` — with the references pointing at this registry's resources (its Patient, Practitioner,
Observations and ImagingStudy; Encounter, Specimen and Media are types it does not hold, so those references are kept
as sent). Identifiers are in the hospital's own namespaces.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import orjson
import pytest

from tests.integration.conftest import Api, new_resident_id, unique

LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
UCUM = "http://unitsofmeasure.org"
NARRATIVE = '<div xmlns="http://www.w3.org/1999/xhtml"><p>{}</p></div>'


def _text(what: str) -> dict[str, str]:
    return {"status": "generated", "div": NARRATIVE.format(what)}


def _nid() -> str:
    return new_resident_id()


def _created(api: Api, body: dict[str, Any], who: str = "hosp-a-system") -> dict[str, Any]:
    r = api.post(f"/fhir/{body['resourceType']}", body, who=who)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _observation(patient: str, loinc: str, value: float, unit: str, performer: str) -> dict[str, Any]:
    """Like R4's observation-example-f001-glucose / f002-excess: a lab value with its reference range."""
    return {
        "resourceType": "Observation",
        "identifier": [{"use": "official", "system": "http://hosp-a.example/observation", "value": unique("obs")}],
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "laboratory"}]}],
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectivePeriod": {"start": "2026-03-01T08:30:00+08:00", "end": "2026-03-01T08:30:00+08:00"},
        "issued": "2026-03-01T10:30:00.000+08:00",
        "performer": [{"reference": performer}],
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
        "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                        "code": "N"}]}],
        "referenceRange": [{"low": {"value": 4, "unit": unit, "system": UCUM, "code": unit},
                            "high": {"value": 10, "unit": unit, "system": UCUM, "code": unit}}],
    }  # fmt: skip


class Region:
    def __init__(self, api: Api) -> None:
        self.api = api
        nid = _nid()
        self.patient = api.patient("hosp-a", unique("A"), nid)["id"]
        self.other_patient = api.patient("hosp-a", unique("A"), _nid())["id"]
        doctor = {"resourceType": "Practitioner", "identifier": [{"system": "http://hosp-a.example/staff",
                  "value": unique("dr")}], "name": [{"use": "official", "family": "王", "given": ["明"]}]}  # fmt: skip
        self.doctor = f"Practitioner/{_created(self.api, doctor)['id']}"
        self.order = _created(api, {
            "resourceType": "ServiceRequest", "status": "completed", "intent": "order",
            "identifier": [{"system": "http://hosp-a.example/order", "value": unique("ord")}],
            "code": {"coding": [{"system": LOINC, "code": "58410-2"}]},
            "subject": {"reference": f"Patient/{self.patient}"},
        })["id"]  # fmt: skip
        self.results = [
            _created(api, _observation(self.patient, code, value, "10*9/L", self.doctor))["id"]
            for code, value in (("6690-2", 6.3), ("777-3", 8.50))
        ]
        foreign = _observation(self.other_patient, "6690-2", 5.1, "10*9/L", self.doctor)
        self.foreign_result = _created(api, foreign)["id"]
        b_patient = api.patient("hosp-b", unique("B"), nid)["id"]  # the same person, registered at B too
        b_obs = _observation(b_patient, "6690-2", 5.0, "10*9/L", "Organization/hosp-b")
        b_obs["identifier"] = [{"system": "http://hosp-b.example/observation", "value": unique("obs")}]
        self.other_hospitals_result = _created(api, b_obs, who="hosp-b-system")["id"]
        study_uid = f"2.25.{uuid.uuid4().int}"
        self.study = _created(api, {
            "resourceType": "ImagingStudy", "status": "available",
            "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{study_uid}"}],
            "subject": {"reference": f"Patient/{self.patient}"}, "started": "2026-03-02T09:00:00+08:00",
            "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "US"}],
            "numberOfSeries": 1, "numberOfInstances": 1,
            "series": [{"uid": f"{study_uid}.1", "number": 1,
                        "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "US"},
                        "bodySite": {"system": SCT, "code": "818983003", "display": "Abdomen"},
                        "instance": [{"uid": f"{study_uid}.1.1",
                                      "sopClass": {"system": "urn:ietf:rfc:3986",
                                                   "code": "urn:oid:1.2.840.10008.5.1.4.1.1.6.1"}}]}],
        })["id"]  # fmt: skip

    def identifier(self) -> list[dict[str, str]]:
        return [{"use": "official", "system": "http://hosp-a.example/report", "value": unique("nr")}]

    # ---------------------------------------------------------------- the R4 examples' shapes
    def lab_panel(self) -> dict[str, Any]:
        """diagnosticreport-example-f001 (a blood count, hematology) / -ghp (a panel of results), performed by a
        Practitioner."""
        return {
            "resourceType": "DiagnosticReport",
            "text": _text("Complete blood count: WBC 6.3, lymphocytes 8.50"),
            "identifier": self.identifier(),
            "basedOn": [{"reference": f"ServiceRequest/{self.order}"}],
            "status": "final",
            "category": [{"coding": [{"system": SCT, "code": "252275004", "display": "Haematology test"},
                                     {"system": V2_0074, "code": "HM"}]}],
            "code": {"coding": [{"system": LOINC, "code": "58410-2",
                                 "display": "Complete blood count (hemogram) panel - Blood by Automated count"}]},
            "subject": {"reference": f"Patient/{self.patient}", "display": "P. van den Heuvel"},
            "encounter": {"reference": "Encounter/f001"},
            "effectiveDateTime": "2026-03-01T08:30:00+08:00",
            "issued": "2026-03-01T10:32:52+08:00",
            "performer": [{"reference": self.doctor, "display": "王明"}],
            "resultsInterpreter": [{"reference": self.doctor}],
            "specimen": [{"reference": "Specimen/rtt", "display": "Red Top Tube"}],
            "result": [{"reference": f"Observation/{rid}"} for rid in self.results],
            "conclusion": "Core lab",
        }  # fmt: skip

    def imaging(self) -> dict[str, Any]:
        """diagnosticreport-example-ultrasound / -f201: an imaging report about its ImagingStudy, with key images
        (``media``) and a coded conclusion."""
        return {
            "resourceType": "DiagnosticReport",
            "identifier": self.identifier(),
            "status": "final",
            "category": [{"coding": [{"system": SCT, "code": "394914008", "display": "Radiology"},
                                     {"system": V2_0074, "code": "RAD"}]}],
            "code": {"coding": [{"system": SCT, "code": "45036003", "display": "Ultrasonography of abdomen"}],
                     "text": "Abdominal Ultrasound"},
            "subject": {"reference": f"Patient/{self.patient}"},
            "effectiveDateTime": "2026-03-02T09:00:00+08:00",
            "issued": "2026-03-02T11:45:33+08:00",
            "performer": [{"reference": self.doctor}],
            "imagingStudy": [{"reference": f"ImagingStudy/{self.study}"}],
            "media": [{"comment": "A comment about the image",
                       "link": {"reference": "Media/1.2.840.11361907579238403408700.3.1.04.19970327150033"}}],
            "conclusion": "Unremarkable study",
            "conclusionCode": [{"coding": [{"system": SCT, "code": "17621005", "display": "Normal"}]}],
        }  # fmt: skip

    def presented_form(self) -> dict[str, Any]:
        """diagnosticreport-example-papsmear / -pgx: the report as a rendered document (``presentedForm``), read by a
        ``resultsInterpreter``, performed by the hospital's Organization."""
        pdf = base64.b64encode(b"%PDF-1.4\n% synthetic report\n").decode()
        return {
            "resourceType": "DiagnosticReport",
            "text": _text("Cervical cytology report"),
            "identifier": self.identifier(),
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "47527-7", "display": "Cytology report of Cervical or "
                                 "vaginal smear or scraping Cyto stain.thin prep"}]},
            "subject": {"reference": f"Patient/{self.patient}"},
            "effectiveDateTime": "2026-03-03",
            "issued": "2026-03-04T09:00:00+08:00",
            "performer": [{"reference": "Organization/hosp-a", "display": "A 医院"}],
            "resultsInterpreter": [{"reference": self.doctor}],
            "presentedForm": [{"contentType": "application/pdf", "language": "zh-CN", "data": pdf,
                               "title": "HPV ASC-US Reflex"}],
        }  # fmt: skip


@pytest.fixture(scope="module")
def region(api: Api) -> Region:
    return Region(api)


def _same_content(sent: dict[str, Any], stored: dict[str, Any]) -> None:
    """Everything sent is served back as sent; only ``id`` and ``meta`` are the server's."""
    assert {k: v for k, v in stored.items() if k not in ("id", "meta")} == sent


@pytest.mark.parametrize("shape", ["lab_panel", "imaging", "presented_form"])
def test_r4_example_shaped_reports_are_accepted_unchanged(api: Api, region: Region, shape: str) -> None:
    report = getattr(region, shape)()
    text = orjson.dumps(report)
    r = api.post("/fhir/DiagnosticReport", text, who="hosp-a-system")
    assert r.status_code == 201, r.text
    created = r.json()
    _same_content(report, created)
    read = api.get(f"/fhir/DiagnosticReport/{created['id']}", who="hosp-a-system")
    assert read.status_code == 200
    _same_content(report, read.json())
    # the reporting hospital's own, whoever is named as performer (Practitioner, or its Organization)
    with api.ctx.uow.begin() as repo:
        stored = repo.get("DiagnosticReport", created["id"])
    assert stored is not None and stored.org_id == "hosp-a"


def _refusal(r: Any, status: int, code: str, *words: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    issue = outcome["issue"][0]
    assert issue["severity"] == "error" and issue["code"] == code, issue
    said = issue["diagnostics"] + " " + " ".join(issue.get("expression", []))
    for word in words:
        assert word in said, (word, issue)
    return dict(issue)


def test_r4_example_shaped_reports_that_break_a_rule_are_refused_clearly(api: Api, region: Region) -> None:
    base = region.lab_panel()
    cases: list[tuple[str, dict[str, Any], int, str, tuple[str, ...]]] = [
        ("another hospital as performer", {**base, "performer": [{"reference": "Organization/hosp-b"}]}, 403,
         "forbidden", ("Organization/hosp-b", "writes as Organization/hosp-a")),
        ("another patient's result", {**base, "result": [{"reference": f"Observation/{region.foreign_result}"}]},
         422, "business-rule", ("DiagnosticReport.result", "another patient")),
        ("another hospital's result",
         {**base, "result": [{"reference": f"Observation/{region.other_hospitals_result}"}]}, 403,
         "forbidden", ("issued by another organization",)),
        ("an unknown subject", {**base, "subject": {"reference": "Patient/nobody-here"}}, 422, "not-found",
         ("DiagnosticReport.subject", "Patient/nobody-here")),
        ("an unknown study", {**region.imaging(), "imagingStudy": [{"reference": "ImagingStudy/none"}]}, 422,
         "not-found", ("DiagnosticReport.imagingStudy", "ImagingStudy/none")),
        ("a status outside the required value set", {**base, "status": "done"}, 400, "invalid",
         ("DiagnosticReport.status", "'done'")),
        ("a missing code (1..1)", {k: v for k, v in base.items() if k != "code"}, 400, "invalid", ("code",)),
    ]  # fmt: skip
    for what, body, status, code, words in cases:
        body = {**body, "identifier": region.identifier()}
        number = body["identifier"][0]["value"]
        r = api.post("/fhir/DiagnosticReport", body, who="hosp-a-system")
        _refusal(r, status, code, *words)
        found = api.get("/fhir/DiagnosticReport", params={"identifier": f"http://hosp-a.example/report|{number}"})
        assert not found.json().get("entry"), f"{what}: something was written"
