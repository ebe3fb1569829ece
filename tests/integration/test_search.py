"""FHIR R4 search (https://hl7.org/fhir/R4/search.html): the parameter types and their modifiers, chaining, common
parameters, paging, sorting, _include, _summary/_total, error handling, POST _search and the care-context limit of a
clinician's search.

The database is shared by the module, so every test creates its own data with unique values and narrows its searches
to it (a fresh patient, or ``_id``).
"""

from __future__ import annotations

import base64
import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson
import pytest

from tests.integration.conftest import NATIONAL, Api, resident_id, unique

LOINC = "http://loinc.org"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
OBS_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"
REGIONAL = "https://hr-registry.org.cn/fhir/CodeSystem/regional-item-code"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
SCT = "http://snomed.info/sct"
CHEST, HEAD = "51185008", "69536005"
FORM = "application/x-www-form-urlencoded"
Params = dict[str, str] | list[tuple[str, str]]

_SEEDS = itertools.count(300)  # national ID seeds for this module (the other modules have their own databases)


# ---------------------------------------------------------------------------------------------------- writing
def cc(system: str | None, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code} if system else {"code": code}]}


def ref(target: str) -> dict[str, str]:
    return {"reference": target}


def create(api: Api, org: str, resource: dict[str, Any]) -> dict[str, Any]:
    resource = {k: v for k, v in resource.items() if v is not None}
    r = api.post(f"/fhir/{resource['resourceType']}", resource, who=f"{org}-system")
    assert r.status_code == 201, r.text
    return dict(r.json())


def patient(api: Api, org: str = "hosp-a", nid: str | None = None, **fields: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [
            {"system": f"http://{org}.example/mrn", "value": unique("MRN")},
            {"system": NATIONAL, "value": nid or resident_id(next(_SEEDS))},
        ],
        "name": [{"family": "测", "given": ["试"]}],
        "gender": "female",
        "birthDate": "1980-05-06",
        "managingOrganization": ref(f"Organization/{org}"),
        **fields,
    }
    return create(api, org, resource)


def report(api: Api, pid: str, org: str = "hosp-a", **fields: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": f"http://{org}.example/report", "value": unique("R")}],
        "status": "final",
        "category": [cc(V2_0074, "LAB")],
        "code": cc(LOINC, "58410-2"),
        "subject": ref(f"Patient/{pid}"),
        "effectiveDateTime": "2025-03-01T08:00:00+08:00",
        "issued": "2025-03-01T10:00:00+08:00",
        "performer": [ref(f"Organization/{org}")],
        **fields,
    }
    return create(api, org, resource)


def observation(api: Api, pid: str, code: str = "718-7", **fields: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": cc(LOINC, code),
        "subject": ref(f"Patient/{pid}"),
        "effectiveDateTime": "2025-03-01T08:00:00+08:00",
        "performer": [ref("Organization/hosp-a")],
        **fields,
    }
    return create(api, "hosp-a", resource)


def service_request(api: Api, pid: str, code: str = "24627-2", **fields: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": "http://hosp-a.example/order", "value": unique("SR")}],
        "status": "active",
        "intent": "order",
        "code": cc(LOINC, code),
        "subject": ref(f"Patient/{pid}"),
        "requester": ref("Organization/hosp-a"),
        **fields,
    }
    return create(api, "hosp-a", resource)


def oid() -> str:
    return f"1.2.156.{uuid.uuid4().int % 10**20}"


def series(modality: str, site: str) -> dict[str, Any]:
    coded = {"modality": {"system": DCM, "code": modality}, "bodySite": {"system": SCT, "code": site}}
    return {"uid": oid(), **coded, "performer": [{"actor": ref("Organization/hosp-a")}]}


def imaging_study(api: Api, pid: str, **fields: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{oid()}"}],
        "status": "available",
        "subject": ref(f"Patient/{pid}"),
        "started": "2025-05-01T10:00:00+08:00",
        "series": [series("CT", CHEST)],
        **fields,
    }
    return create(api, "hosp-a", resource)


# ---------------------------------------------------------------------------------------------------- searching
def search(api: Api, rtype: str, params: Params, who: str = "admin", **headers: str) -> dict[str, Any]:
    r = api.get(f"/fhir/{rtype}", who=who, params=params, headers=headers)
    assert r.status_code == 200, r.text
    body = dict(r.json())
    assert body["resourceType"] == "Bundle"
    assert body["type"] == "searchset"
    return body


def resources(bundle: dict[str, Any], mode: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [r["id"] for r in resources(bundle, mode)]


def found(api: Api, rtype: str, params: Params, who: str = "admin") -> set[str]:
    got = ids(search(api, rtype, params, who))
    assert len(got) == len(set(got)), got
    return set(got)


def scoped(api: Api, rtype: str, *fixed: tuple[str, str]) -> Callable[..., set[str]]:
    """A search narrowed to this test's data: ``where(("code:not", "x"), status="final")`` → the ids found."""

    def where(*pairs: tuple[str, str], **params: str) -> set[str]:
        return found(api, rtype, [*fixed, *pairs, *params.items()])

    return where


def link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((x["url"] for x in bundle.get("link", []) if x["relation"] == relation), None)


def all_pages(api: Api, first: dict[str, Any], who: str = "admin") -> list[dict[str, Any]]:
    pages = [first]
    while (url := link(pages[-1], "next")) is not None:
        r = api.get(url, who=who)
        assert r.status_code == 200, r.text
        pages.append(r.json())
        assert len(pages) < 30, "next links do not end"
    return pages


STRICT = {"Prefer": "handling=strict"}


def refused(api: Api, rtype: str, params: Params, status: int = 400, **headers: str) -> str:
    r = api.get(f"/fhir/{rtype}", params=params, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    return " ".join(str(i.get("diagnostics", "")) for i in outcome["issue"])


# ---------------------------------------------------------------------------------------------------- Patient
def test_patient_identifier_system_value_code_only_and_no_system(api: Api) -> None:
    mrn, plain, nid = unique("MRN"), unique("NOSYS"), resident_id(next(_SEEDS))
    a_mrn, b_mrn = "http://hosp-a.example/mrn", "http://hosp-b.example/mrn"
    p_ids = [{"system": a_mrn, "value": mrn}, {"system": NATIONAL, "value": nid}, {"value": plain}]
    q_ids = [{"system": b_mrn, "value": mrn}, {"system": NATIONAL, "value": resident_id(next(_SEEDS))}]
    p, q = patient(api, identifier=p_ids)["id"], patient(api, "hosp-b", identifier=q_ids)["id"]
    where = scoped(api, "Patient")
    assert where(identifier=f"{a_mrn}|{mrn}") == {p}
    assert where(identifier=f"{b_mrn}|{mrn}") == {q}
    assert where(identifier=mrn) == {p, q}  # [code]: any system
    assert where(identifier=f"|{mrn}") == set()  # |[code]: only identifiers without a system
    assert where(identifier=f"|{plain}") == {p}
    assert where(identifier=plain) == {p}
    assert where(identifier=f"{a_mrn}|{mrn},{b_mrn}|{mrn}") == {p, q}
    assert where(identifier=f"{a_mrn}|{unique()}") == set()
    assert where(identifier=f"{NATIONAL}|{nid}") == {p}
    assert where(identifier=nid) == {p}  # search.html#token: [code] matches Identifier.value whatever the system


def test_patient_name_family_given_prefix_case_accent_exact_contains(api: Api) -> None:
    p1 = patient(api, name=[{"family": "Müller", "given": ["Zoë", "Anne"]}])["id"]
    p2 = patient(api, name=[{"family": "Mueller", "given": ["Zoe"]}])["id"]
    p3 = patient(api, name=[{"family": "Schmidt", "given": ["Müller"]}])["id"]
    where = scoped(api, "Patient", ("_id", f"{p1},{p2},{p3}"))
    assert where(name="muller") == {p1, p3}  # case- and accent-insensitive, any part of the name
    assert where(name="MÜL") == {p1, p3}  # starts with
    assert where(family="muller") == {p1}
    assert where(family="MUE") == {p2}
    assert where(given="zoe") == {p1, p2}
    assert where(given="ann") == {p1}
    assert where(name="ller") == set()  # no substring match without :contains
    assert where(name="mue,schm") == {p2, p3}  # comma: OR
    assert where(name="muller", given="zoe") == {p1}  # two parameters: AND
    assert where(("family:exact", "Müller")) == {p1}
    assert where(("family:exact", "muller")) == set()  # :exact is case- and accent-sensitive
    assert where(("family:exact", "Müll")) == set()  # and matches the whole string
    assert where(("name:exact", "Zoe")) == {p2}
    assert where(("name:contains", "LLE")) == {p1, p2, p3}
    assert where(("name:contains", "ülle")) == {p1, p3}


def test_patient_chinese_names_match_family_plus_given(api: Api) -> None:
    c1 = patient(api, name=[{"family": "张", "given": ["三"]}])["id"]
    c2 = patient(api, name=[{"family": "张", "given": ["三丰"]}])["id"]
    c3 = patient(api, name=[{"family": "李", "given": ["四"], "text": "李四"}])["id"]
    c4 = patient(api, name=[{"family": "张", "given": ["山"]}])["id"]
    where = scoped(api, "Patient", ("_id", ",".join((c1, c2, c3, c4))))
    assert where(name="张三") == {c1, c2}
    assert where(name="张三丰") == {c2}
    assert where(name="张") == {c1, c2, c4}
    assert where(family="张") == {c1, c2, c4}
    assert where(given="三") == {c1, c2}
    assert where(name="李四") == {c3}
    assert where(("name:exact", "李四")) == {c3}


def test_patient_birthdate_gender_organization(api: Api) -> None:
    b1 = patient(api, birthDate="1980-05-06", gender="female")["id"]
    b2 = patient(api, birthDate="1990-01-15", gender="male")["id"]
    b3 = patient(api, "hosp-b", birthDate="1975", gender=None)["id"]
    where = scoped(api, "Patient", ("_id", f"{b1},{b2},{b3}"))
    assert where(birthdate="1980-05-06") == {b1}
    assert where(birthdate="eq1980") == {b1}
    assert where(birthdate="1975") == {b3}
    assert where(birthdate="1975-06-01") == set()  # a year does not lie within one day
    assert where(birthdate="ge1980-01-01") == {b1, b2}
    assert where(birthdate="lt1980-01-01") == {b3}
    assert where(birthdate="le1980-05-06") == {b1, b3}
    assert where(birthdate="gt1980-05-06") == {b2}
    assert where(birthdate="ne1980-05-06") == {b2, b3}
    assert where(("birthdate", "ge1980"), ("birthdate", "lt1990")) == {b1}
    assert where(gender="male") == {b2}
    assert where(gender="male,female") == {b1, b2}
    assert where(("gender:not", "male")) == {b1, b3}  # :not includes resources with no value
    assert where(organization="Organization/hosp-b") == {b3}
    assert where(organization="hosp-a") == {b1, b2}


# ---------------------------------------------------------------------------------------------------- DiagnosticReport
def test_report_reference_parameters(api: Api) -> None:
    p, q, pb = patient(api)["id"], patient(api)["id"], patient(api, "hosp-b")["id"]
    sr, obs, study = service_request(api, p)["id"], observation(api, p)["id"], imaging_study(api, p)["id"]
    links = {"result": [ref(f"Observation/{obs}")], "imagingStudy": [ref(f"ImagingStudy/{study}")]}
    r1 = report(api, p, basedOn=[ref(f"ServiceRequest/{sr}")], **links)["id"]
    r2, r3, r4 = report(api, p)["id"], report(api, q)["id"], report(api, pb, "hosp-b")["id"]
    where = scoped(api, "DiagnosticReport")
    for value in (p, f"Patient/{p}", f"http://testserver/fhir/Patient/{p}"):
        assert where(patient=value) == {r1, r2}, value
    assert where(subject=f"Patient/{p}") == {r1, r2}
    assert where(("subject:Patient", p)) == {r1, r2}
    assert where(patient=f"{p},{q}") == {r1, r2, r3}
    mine = ("_id", ",".join((r1, r2, r3, r4)))
    assert where(mine, performer="Organization/hosp-b") == {r4}
    assert where(mine, performer="Organization/hosp-a") == {r1, r2, r3}
    assert where(("based-on", f"ServiceRequest/{sr}")) == {r1}
    assert where(result=f"Observation/{obs}") == {r1}
    assert where(result=obs) == {r1}
    assert where(("imaging-study", f"ImagingStudy/{study}")) == {r1}
    # search.html#reference: subject:Group=<id> is subject=Group/<id> — no Group has that id
    assert where(("subject:Group", p)) == set()


def test_report_tokens_code_category_status_identifier(api: Api) -> None:
    p, number = patient(api)["id"], unique("RPT")
    ra = report(api, p, identifier=[{"system": "http://hosp-a.example/report", "value": number}])["id"]
    rb = report(api, p, code=cc(LOINC, "24323-8"), status="amended")["id"]
    rc = report(api, p, code=cc(REGIONAL, "JY-XY-004"), category=[cc(V2_0074, "RAD")], status="preliminary")["id"]
    rd = report(api, p, code={"coding": [{"code": "LOCAL-1"}], "text": "本院项目"})["id"]
    where = scoped(api, "DiagnosticReport", ("patient", p))
    assert where(code=f"{LOINC}|58410-2") == {ra}
    assert where(code="58410-2") == {ra}
    assert where(code="58410-2,24323-8") == {ra, rb}
    assert where(code=f"{LOINC}|") == {ra, rb}
    assert where(code=f"{REGIONAL}|JY-XY-004") == {rc}
    assert where(code="|LOCAL-1") == {rd}
    assert where(code="|58410-2") == set()
    assert where(code=f"{SCT}|58410-2") == set()
    assert where(("code:not", f"{LOINC}|58410-2")) == {rb, rc, rd}
    assert where(category=f"{V2_0074}|RAD") == {rc}
    assert where(category="LAB") == {ra, rb, rd}
    assert where(status="final") == {ra, rd}
    assert where(status="amended,preliminary") == {rb, rc}
    assert where(("status:not", "final")) == {rb, rc}
    assert where(code=f"{LOINC}|", status="final") == {ra}
    anywhere = scoped(api, "DiagnosticReport")
    assert anywhere(identifier=f"http://hosp-a.example/report|{number}") == {ra}
    assert anywhere(identifier=number) == {ra}
    assert anywhere(identifier=f"http://hosp-b.example/report|{number}") == set()


def test_report_date_and_issued_prefixes_and_precision(api: Api) -> None:
    p = patient(api)["id"]
    r1 = report(api, p, effectiveDateTime="2025-03-01T08:00:00+08:00")["id"]  # 2025-03-01T00:00:00Z
    r2 = report(api, p, effectiveDateTime="2025-03-15T12:30:00+08:00", issued="2025-03-16T10:00:00.500+08:00")["id"]
    r3 = report(api, p, effectiveDateTime="2025-06")["id"]  # the whole month
    period = {"start": "2024-12-31T20:00:00+08:00", "end": "2025-01-01T10:00:00+08:00"}
    r4 = report(api, p, effectiveDateTime=None, effectivePeriod=period)["id"]
    r5 = report(api, p, effectiveDateTime="2015-01-01")["id"]
    where = scoped(api, "DiagnosticReport", ("patient", p))

    def date(*values: str) -> set[str]:
        return where(*(("date", v) for v in values))

    assert date("2025") == {r1, r2, r3}  # the period r4 starts in 2024: not contained
    assert date("2024") == set()
    assert date("2025-03") == {r1, r2}
    assert date("2025-03-01") == {r1}  # a date without a zone is read in the server's zone (+08:00)
    assert date("eq2025-03-01T00:00:00Z") == {r1}  # seconds, written in Z, against a resource in +08:00
    assert date("2025-03-01T08:00:00+08:00") == {r1}
    assert date("2025-03-01T00:00:01Z") == set()
    assert date("2025-06-15") == set()  # a day does not contain r3's whole month
    assert date("ne2025-03") == {r3, r4, r5}
    assert date("gt2025-03-01") == {r2, r3}
    assert date("lt2025-03-01") == {r4, r5}
    assert date("ge2025-03-01") == {r1, r2, r3}
    assert date("le2025-03-15") == {r1, r2, r4, r5}
    assert date("sa2025-03-01") == {r2, r3}
    assert date("eb2025-03-01") == {r4, r5}
    assert date("ge2025-03-15T04:30:00Z") == {r2, r3}
    assert date("gt2025-03-15T04:30:00Z") == {r3}
    assert date("ge2025-01-01", "lt2025-04") == {r1, r2}  # AND
    assert date("2025-03-01,2025-03-15") == {r1, r2}  # OR
    approx = date("ap2025-03-01")  # how near is the server's call; these two are near, 2015 is not
    assert {r1, r2} <= approx
    assert r5 not in approx
    everyone = {r1, r2, r3, r4, r5}
    assert where(issued="2025-03-01") == everyone - {r2}
    assert where(issued="2025-03-16T02:00:00Z") == {r2}  # .500 lies within that second
    assert where(issued="gt2025-03-01T02:00:00Z") == {r2}
    assert where(issued="lt2025-03-16") == everyone - {r2}


def test_report_chained_patient_identifier_and_name(api: Api) -> None:
    nid, family = resident_id(next(_SEEDS)), unique("Chain")
    pa = patient(api, "hosp-a", nid, name=[{"family": family, "given": ["Li"]}])
    pb = patient(api, "hosp-b", nid)
    ra, rb = report(api, pa["id"])["id"], report(api, pb["id"], "hosp-b")["id"]
    report(api, patient(api, "hosp-a")["id"])
    mrn_a, mrn_b = pa["identifier"][0], pb["identifier"][0]
    a_token, b_token = f"{mrn_a['system']}|{mrn_a['value']}", f"{mrn_b['system']}|{mrn_b['value']}"
    where = scoped(api, "DiagnosticReport")
    assert where(**{"patient.identifier": a_token}) == {ra}  # a hospital's MRN: that hospital's reports
    assert where(**{"patient.identifier": b_token}) == {rb}
    assert where(**{"patient.identifier": mrn_a["value"]}) == {ra}
    assert where(**{"patient.identifier": f"{NATIONAL}|{nid}"}) == {ra, rb}  # the person: both hospitals
    assert where(**{"subject:Patient.identifier": f"{NATIONAL}|{nid}"}) == {ra, rb}
    assert where(**{"subject:Patient.identifier": a_token}) == {ra}
    assert where(**{"patient.name": family.lower()}) == {ra}
    assert where(**{"patient.identifier": f"{NATIONAL}|{resident_id(next(_SEEDS))}"}) == set()


# ---------------------------------------------------------------------------------------------------- other types
def test_observation_search(api: Api) -> None:
    p = patient(api)["id"]
    sr = service_request(api, p)["id"]
    lab, vital, when = [cc(OBS_CAT, "laboratory")], [cc(OBS_CAT, "vital-signs")], "2025-02-01T09:00:00+08:00"
    o1 = observation(api, p, category=lab, basedOn=[ref(f"ServiceRequest/{sr}")], effectiveDateTime=when)["id"]
    period = {"effectiveDateTime": None, "effectivePeriod": {"start": "2025-04-01", "end": "2025-04-02"}}
    o2 = observation(api, p, "2345-7", status="preliminary", category=vital, **period)["id"]
    where = scoped(api, "Observation", ("patient", p))
    assert where() == {o1, o2}
    assert scoped(api, "Observation")(subject=f"Patient/{p}") == {o1, o2}
    assert where(code=f"{LOINC}|718-7") == {o1}
    assert where(code="2345-7") == {o2}
    assert where(date="2025-02") == {o1}
    assert where(date="ge2025-03") == {o2}
    assert where(date="lt2025-02-01T01:00:00Z") == set()  # o1 is 01:00:00Z exactly
    assert where(date="lt2025-02-01T01:00:01Z") == {o1}
    assert where(status="preliminary") == {o2}
    assert where(status="final,preliminary") == {o1, o2}
    assert where(category="laboratory") == {o1}
    assert where(category=f"{OBS_CAT}|vital-signs") == {o2}
    assert where(("based-on", f"ServiceRequest/{sr}")) == {o1}


def test_imaging_study_search(api: Api) -> None:
    p = patient(api)["id"]
    uid, accession = f"urn:oid:{oid()}", unique("ACC")
    acsn = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]}
    accession_id = {"type": acsn, "system": "http://hosp-a.example/accession", "value": accession}
    idents = [{"system": "urn:dicom:uid", "value": uid}, accession_id]
    s1 = imaging_study(api, p, modality=[{"system": DCM, "code": "CT"}], identifier=idents)["id"]
    s2 = imaging_study(api, p, started="2025-06-01", series=[series("MR", HEAD)])["id"]
    anywhere, where = scoped(api, "ImagingStudy"), scoped(api, "ImagingStudy", ("patient", p))
    assert where() == {s1, s2}
    assert anywhere(identifier=f"urn:dicom:uid|{uid}") == {s1}
    assert anywhere(identifier=f"http://hosp-a.example/accession|{accession}") == {s1}
    assert anywhere(identifier=accession) == {s1}
    assert where(modality="CT") == {s1}
    assert where(modality=f"{DCM}|MR") == {s2}  # only in series.modality
    assert where(modality="CT,MR") == {s1, s2}
    assert where(started="2025-05-01") == {s1}
    assert where(started="2025-05-01T02:00:00Z") == {s1}
    assert where(started="ge2025-05-15") == {s2}
    assert where(bodysite=f"{SCT}|{HEAD}") == {s2}
    assert where(bodysite=CHEST) == {s1}


def test_service_request_search(api: Api) -> None:
    p, number = patient(api)["id"], unique("ORD")
    s1 = service_request(api, p, identifier=[{"system": "http://hosp-a.example/order", "value": number}])["id"]
    s2 = service_request(api, p, "30746-2", status="completed", intent="plan")["id"]
    where = scoped(api, "ServiceRequest", ("patient", p))
    assert where() == {s1, s2}
    assert where(code=f"{LOINC}|24627-2") == {s1}
    assert where(code="30746-2") == {s2}
    assert where(status="completed") == {s2}
    assert where(intent="order") == {s1}
    assert where(intent="plan,order") == {s1, s2}
    assert scoped(api, "ServiceRequest")(identifier=f"http://hosp-a.example/order|{number}") == {s1}


# ---------------------------------------------------------------------------------------------------- common parameters
def test_id_and_last_updated(api: Api) -> None:
    before = (datetime.now(UTC) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    p1, p2, p3 = (patient(api) for _ in range(3))
    i1, i2, i3 = p1["id"], p2["id"], p3["id"]
    anywhere, where = scoped(api, "Patient"), scoped(api, "Patient", ("_id", f"{i1},{i2},{i3}"))
    assert anywhere(_id=f"{i1},{i3}") == {i1, i3}
    assert anywhere(_id=f"{i2},{unique('nobody')}") == {i2}
    assert where(_lastUpdated=f"ge{before}") == {i1, i2, i3}
    assert where(_lastUpdated=f"lt{before}") == set()
    first = p1["meta"]["lastUpdated"]
    assert where(_lastUpdated=first) == {i1}
    assert where(_lastUpdated=f"gt{first}") == {i2, i3}
    assert api.delete(f"/fhir/Patient/{i3}", who="hosp-a-system").status_code == 204
    assert where() == {i1, i2}  # a deleted resource is not found


def test_missing_modifier(api: Api) -> None:
    p = patient(api)["id"]
    sr = service_request(api, p)["id"]
    full = report(api, p, basedOn=[ref(f"ServiceRequest/{sr}")])["id"]
    bare = report(api, p, effectiveDateTime=None)["id"]
    where = scoped(api, "DiagnosticReport", ("patient", p))
    assert where(("based-on:missing", "true")) == {bare}
    assert where(("based-on:missing", "false")) == {full}
    assert where(("date:missing", "true")) == {bare}
    assert where(("date:missing", "false")) == {full}
    assert where(("imaging-study:missing", "true")) == {full, bare}
    assert where(("imaging-study:missing", "false")) == set()
    g1, g2 = patient(api, gender=None)["id"], patient(api, gender="male")["id"]
    assert scoped(api, "Patient", ("_id", f"{g1},{g2}"))(("gender:missing", "true")) == {g1}
    assert scoped(api, "Patient", ("_id", f"{g1},{g2}"))(("gender:missing", "false")) == {g2}
    assert "missing" in refused(api, "DiagnosticReport", {"status:missing": "maybe"})


# ---------------------------------------------------------------------------------------------------- paging
def paged(api: Api, first: dict[str, Any]) -> list[str]:
    return [rid for page in all_pages(api, first) for rid in ids(page)]


def test_paging_follows_next_links_without_duplicates_or_gaps(api: Api) -> None:
    p = patient(api)["id"]
    created = [report(api, p)["id"] for _ in range(5)]
    pages = all_pages(api, search(api, "DiagnosticReport", {"patient": p, "_count": "2", "_total": "accurate"}))
    assert [len(ids(page)) for page in pages] == [2, 2, 1]
    assert sorted(rid for page in pages for rid in ids(page)) == sorted(created)
    assert all(page["total"] == 5 for page in pages)
    assert all(link(page, "self") for page in pages)
    assert link(pages[-1], "next") is None


def test_paging_session_is_stable_while_matching_resources_are_created(api: Api) -> None:
    p = patient(api)["id"]
    dated = {
        d: report(api, p, effectiveDateTime=d)["id"] for d in ("2025-01-10", "2025-01-20", "2025-01-30", "2025-02-10")
    }
    by_date = search(api, "DiagnosticReport", {"patient": p, "_sort": "date", "_count": "2"})
    by_pk = search(api, "DiagnosticReport", {"patient": p, "_count": "2"})
    by_updated = search(api, "DiagnosticReport", {"patient": p, "_count": "3", "_sort": "_lastUpdated"})
    assert ids(by_date) == [dated["2025-01-10"], dated["2025-01-20"]]
    # new matches sorting before the cursor, between the unseen ones, and after them
    new = [report(api, p, effectiveDateTime=d)["id"] for d in ("2025-01-15", "2025-02-01", "2025-03-01")]
    assert paged(api, by_date) == [dated[d] for d in sorted(dated)]
    assert sorted(paged(api, by_pk)) == sorted(dated.values())
    assert paged(api, by_updated) == list(dated.values())
    # a session started now sees them all
    fresh = search(api, "DiagnosticReport", {"patient": p, "_sort": "date", "_count": "2"})
    assert sorted(paged(api, fresh)) == sorted([*dated.values(), *new])


def _cursor_of(api: Api) -> tuple[str, list[tuple[str, str]], dict[str, Any]]:
    p = patient(api)["id"]
    for d in ("2025-01-01", "2025-02-01", "2025-03-01"):
        report(api, p, effectiveDateTime=d)
    nxt = link(search(api, "DiagnosticReport", {"patient": p, "_sort": "date", "_count": "1"}), "next")
    assert nxt is not None
    query = parse_qsl(urlsplit(nxt).query)
    cursor = dict(query)["_cursor"]
    payload = cursor.split(".")[0]  # the cursor is "<payload>.<signature>"
    data = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return cursor, [(k, v) for k, v in query if k != "_cursor"], data


def _forge(data: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


def test_a_garbled_cursor_is_rejected(api: Api) -> None:
    cursor, params, data = _cursor_of(api)
    assert len(ids(search(api, "DiagnosticReport", [*params, ("_cursor", cursor)]))) == 1  # the genuine one works
    flipped = cursor[:5] + ("A" if cursor[5] != "A" else "B") + cursor[6:]
    for bad in ("not-a-cursor!", cursor[: len(cursor) // 2], flipped, _forge({"v": [], "s": data["s"]})):
        assert refused(api, "DiagnosticReport", [*params, ("_cursor", bad)]), bad


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda v, pk, s: {"v": [pk], "s": s}, id="sort-value-dropped"),
        pytest.param(lambda v, pk, s: {"v": ["x", pk], "s": s}, id="text-for-a-date"),
        pytest.param(lambda v, pk, s: {"v": [*v, pk - 1], "s": s + 1000}, id="other-row-and-snapshot"),
    ],
)
def test_a_reforged_cursor_is_rejected(api: Api, forge: Any) -> None:
    """A cursor re-encoded with other values is not one the server made: 400, not a 500 nor a silent answer."""
    _cursor, params, data = _cursor_of(api)
    *values, pk = data["v"]
    assert refused(api, "DiagnosticReport", [*params, ("_cursor", _forge(forge(values, pk, data["s"])))])


# ---------------------------------------------------------------------------------------------------- _sort
def test_sort(api: Api) -> None:
    p = patient(api)["id"]
    dates = ("2025-03-03", "2025-03-01", "2025-03-04", "2025-03-02")
    created = [report(api, p, effectiveDateTime=d)["id"] for d in dates]
    by_date = [rid for _, rid in sorted(zip(dates, created, strict=True))]

    def order(sort: str, count: str = "50") -> list[str]:
        return paged(api, search(api, "DiagnosticReport", {"patient": p, "_sort": sort, "_count": count}))

    assert order("date") == by_date
    assert order("-date") == by_date[::-1]
    assert order("_lastUpdated") == created
    assert order("-_lastUpdated") == created[::-1]
    assert order("_id") == sorted(created)
    assert order("-_id") == sorted(created, reverse=True)
    assert order("date", count="1") == by_date  # keyset paging keeps the order
    assert order("-date", count="3") == by_date[::-1]
    assert order("issued,-date") == by_date[::-1]  # all issued alike: the second key decides
    undated = report(api, p, effectiveDateTime=None)["id"]  # where it sorts is the server's call, but only once
    for sort in ("date", "-date"):
        whole = order(sort)
        assert [r for r in whole if r != undated] == (by_date if sort == "date" else by_date[::-1])
        assert sorted(whole) == sorted([*created, undated])
        assert order(sort, count="1") == whole
    assert "status" in refused(api, "DiagnosticReport", {"patient": p, "_sort": "status"})
    assert "nonsense" in refused(api, "DiagnosticReport", {"patient": p, "_sort": "-nonsense"})


# ---------------------------------------------------------------------------------------------------- _include
def test_include_result_performer_imaging_study(api: Api) -> None:
    p = patient(api)["id"]
    o1, o2 = observation(api, p)["id"], observation(api, p, "789-8")["id"]
    study = imaging_study(api, p)["id"]
    imaged = {"imagingStudy": [ref(f"ImagingStudy/{study}")]}
    r1 = report(api, p, result=[ref(f"Observation/{o1}"), ref(f"Observation/{o2}")], **imaged)["id"]
    r2 = report(api, p, result=[ref(f"Observation/{o2}")], **imaged)["id"]

    def included(*includes: str) -> list[tuple[str, str]]:
        params = [("patient", p), ("_total", "accurate"), *(("_include", i) for i in includes)]
        bundle = search(api, "DiagnosticReport", params)
        assert sorted(ids(bundle)) == sorted([r1, r2])
        assert bundle["total"] == 2  # included resources are not counted
        assert {e["search"]["mode"] for e in bundle["entry"]} <= {"match", "include"}
        got = [(r["resourceType"], r["id"]) for r in resources(bundle, "include")]
        assert len(got) == len(set(got)), got  # each included resource once
        return sorted(got)

    observations = sorted([("Observation", o1), ("Observation", o2)])
    assert included("DiagnosticReport:result") == observations
    assert included("DiagnosticReport:result:Observation") == observations
    assert included("DiagnosticReport:performer") == [("Organization", "hosp-a")]
    assert included("DiagnosticReport:imaging-study") == [("ImagingStudy", study)]
    every = included("DiagnosticReport:result", "DiagnosticReport:performer", "DiagnosticReport:imaging-study")
    assert every == sorted([*observations, ("Organization", "hosp-a"), ("ImagingStudy", study)])
    for bad in ("DiagnosticReport:specimen", "Observation:patient", "DiagnosticReport"):
        assert bad in refused(api, "DiagnosticReport", {"patient": p, "_include": bad}, **STRICT)
        lenient = search(api, "DiagnosticReport", {"patient": p, "_include": bad})  # ignored: the matches stay
        assert {e["resource"]["resourceType"] for e in lenient["entry"] if e["search"]["mode"] == "include"} == set()


# ---------------------------------------------------------------------------------------------------- _summary, _total
def test_summary_count_and_total(api: Api) -> None:
    p = patient(api)["id"]
    for code in ("58410-2", "58410-2", "58410-2", "24323-8"):
        report(api, p, code=cc(LOINC, code))
    counted = search(api, "DiagnosticReport", {"patient": p, "_summary": "count"})
    assert counted["total"] == 4
    assert not counted.get("entry")
    assert search(api, "DiagnosticReport", {"patient": p, "code": "24323-8", "_summary": "count"})["total"] == 1
    accurate = search(api, "DiagnosticReport", {"patient": p, "_total": "accurate", "_count": "3"})
    assert accurate["total"] == 4
    assert len(ids(accurate)) == 3


# ---------------------------------------------------------------------------------------------------- errors
def test_unknown_parameters_are_ignored_by_default_and_refused_under_strict_handling(api: Api) -> None:
    """R4 search.html §3.1.1.4: servers SHOULD ignore unknown or unsupported parameters; ``handling=strict`` asks for
    an error instead. fhirpy's ``count()`` sends ``_totalMethod=count``, a parameter of no FHIR version."""
    p = patient(api)["id"]
    rid = report(api, p)["id"]
    for params in ({"patient": p, "colour": "blue"}, {"patient": p, "_totalMethod": "count"},
                   {"patient": p, "colour:exact": "blue"}, {"patient": p, "patient.colour": "x"}):  # fmt: skip
        bundle = search(api, "DiagnosticReport", params)
        assert ids(bundle) == [rid], params
        used = parse_qsl(urlsplit(link(bundle, "self") or "").query)
        assert used == [("patient", p)], used
        assert "unknown" in refused(api, "DiagnosticReport", params, **STRICT)
    assert "colour" in refused(api, "Patient", {"name": "x", "colour": "blue"}, **STRICT)
    counted = search(api, "DiagnosticReport", {"patient": p, "_count": "0", "_totalMethod": "count"})
    assert counted["total"] == 1
    assert not counted.get("entry") or all(e["search"]["mode"] == "outcome" for e in counted["entry"])


def test_malformed_values_are_400_whatever_the_handling(api: Api) -> None:
    """search.html §3.1.1.4: where the content of a parameter is syntactically incorrect, servers SHOULD return an
    error."""
    for handling in ({}, STRICT, {"Prefer": "handling=lenient"}):
        for name, value in (
            ("date", "2025-13-01"),
            ("date", "yesterday"),
            ("date", "2025-02-30"),
            ("issued", "ge2025-3-1"),
            ("date", "xx2025-03-01"),
        ):
            assert name in refused(api, "DiagnosticReport", {name: value}, **handling), value
        assert refused(api, "Patient", {"birthdate": "05/06/1980"}, **handling)
        assert refused(api, "DiagnosticReport", {"_count": "many"}, **handling)


def test_an_unsupported_modifier_is_named_as_such_and_refused_even_when_lenient(api: Api) -> None:
    """A modifier changes what a known parameter means, so ignoring it would answer another question: 400 in every
    handling, saying the modifier is not supported (not that the parameter is unknown)."""
    for rtype, name, value in (
        ("DiagnosticReport", "code:text", "血常规"),
        ("Patient", "name:foo", "x"),
        ("DiagnosticReport", "date:exact", "2025"),
        ("DiagnosticReport", "patient:below", "Patient/x"),
        ("DiagnosticReport", "_id:not", "x"),
        ("DiagnosticReport", "_include:iterate", "DiagnosticReport:result"),
        ("DiagnosticReport", "_count:exact", "3"),
    ):
        for handling in ({}, STRICT, {"Prefer": "handling=lenient"}):
            text = refused(api, rtype, {name: value}, **handling)
            modifier = name.split(":")[1]
            assert f"modifier :{modifier} is not supported" in text, (name, text)
            assert "unknown" not in text, text


def test_lenient_handling_ignores_unknown_parameters_and_says_so(api: Api) -> None:
    p = patient(api)["id"]
    rid = report(api, p)["id"]
    params = {"patient": p, "colour": "blue", "_total": "accurate"}
    bundle = search(api, "DiagnosticReport", params, Prefer="handling=lenient")
    assert ids(bundle) == [rid]
    assert bundle["total"] == 1
    outcomes = resources(bundle, "outcome")
    assert len(outcomes) == 1
    assert outcomes[0]["resourceType"] == "OperationOutcome"
    assert "colour" in " ".join(i.get("diagnostics", "") for i in outcomes[0]["issue"])
    assert api.get("/fhir/DiagnosticReport", params=params, headers={"Prefer": "handling=strict"}).status_code == 400
    # search.html "Handling Errors": the server SHALL return the parameters actually used (in the self link)
    used = dict(parse_qsl(urlsplit(link(bundle, "self") or "").query))
    assert used.get("patient") == p
    assert "colour" not in used


# ---------------------------------------------------------------------------------------------------- POST _search
def test_post_search_with_a_form_equals_get(api: Api) -> None:
    p = patient(api)["id"]
    for code, d in (
        ("58410-2", "2025-01-01"),
        ("58410-2", "2025-02-01"),
        ("24323-8", "2025-03-01"),
        ("58410-2", "2025-04-01"),
        ("1920-8", "2025-05-01"),
    ):
        report(api, p, code=cc(LOINC, code), effectiveDateTime=d)
    form = [("patient", p), ("code", "58410-2,24323-8"), ("_sort", "-date"), ("_count", "2"), ("_total", "accurate")]
    got = search(api, "DiagnosticReport", form)
    r = api.post("/fhir/DiagnosticReport/_search", urlencode(form), headers={"Content-Type": FORM})
    assert r.status_code == 200, r.text
    posted = r.json()
    assert posted["total"] == got["total"] == 4
    assert ids(posted) == ids(got)
    assert paged(api, posted) == paged(api, got)
    # the parameters may also be split between the URL and the body
    r = api.post(f"/fhir/DiagnosticReport/_search?patient={p}", urlencode(form[1:]), headers={"Content-Type": FORM})
    assert ids(r.json()) == ids(got)


# ---------------------------------------------------------------------------------------------------- care context
def test_a_clinician_searches_only_patients_in_the_care_context(api: Api) -> None:
    nid = resident_id(next(_SEEDS))
    pa1, pb1 = patient(api, "hosp-a", nid)["id"], patient(api, "hosp-b", nid)["id"]
    pa2 = patient(api, "hosp-a")["id"]  # never seen at hosp-b
    ra1, ra2, rb1 = report(api, pa1)["id"], report(api, pa2)["id"], report(api, pb1, "hosp-b")["id"]
    patients, reports = ("_id", f"{pa1},{pa2},{pb1}"), ("_id", f"{ra1},{ra2},{rb1}")
    person = ("patient.identifier", f"{NATIONAL}|{nid}")
    assert found(api, "Patient", [patients]) == {pa1, pa2, pb1}
    assert found(api, "Patient", [patients], who="dr-b") == {pa1, pb1}
    assert found(api, "DiagnosticReport", [reports], who="dr-b") == {ra1, rb1}
    assert search(api, "DiagnosticReport", [reports, ("_summary", "count")], who="dr-b")["total"] == 2
    assert found(api, "DiagnosticReport", [("patient", pa2)], who="dr-b") == set()
    assert found(api, "DiagnosticReport", [person], who="dr-b") == {ra1, rb1}
    for rtype, params in (("Patient", patients), ("DiagnosticReport", reports), ("DiagnosticReport", person)):
        assert found(api, rtype, [params], who="dr-c") == set()
