"""One master identity per person across hospitals (docs/design.md §4), IHE PIXm, and no plaintext national ID
stored."""

from __future__ import annotations

from sqlalchemy import text

from tests.integration.conftest import NATIONAL, Api, resident_id, unique

PASSPORT = "https://hr-registry.org.cn/fhir/sid/passport"


def test_a_national_identifier_is_stored_masked_only(api: Api) -> None:
    nid = resident_id(201)
    p = api.patient("hosp-a", unique("A"), nid)
    shown = [i["value"] for i in p["identifier"] if i["system"] == NATIONAL]
    assert shown == [nid[:3] + "*" * 11 + nid[-4:]]
    assert nid not in api.get(f"/fhir/Patient/{p['id']}").text


def test_reports_of_one_person_at_two_hospitals_are_found_by_national_id(api: Api) -> None:
    nid = resident_id(202)
    pa = api.patient("hosp-a", "A-123-" + unique(), nid)
    pb = api.patient("hosp-b", "B-9-" + unique(), nid)
    ra = api.report("hosp-a", pa["id"], unique("RA"))
    rb = api.report("hosp-b", pb["id"], unique("RB"))
    api.report("hosp-a", api.patient("hosp-a", unique("A"), resident_id(203))["id"], unique("other"))
    for who in ("admin", "hosp-b-system", "dr-b"):
        found = api.get("/fhir/DiagnosticReport", who=who, params={"patient.identifier": f"{NATIONAL}|{nid}"}).json()
        assert {e["resource"]["id"] for e in found.get("entry", [])} == {ra["id"], rb["id"]}, who
    # the lower-case x spelling of the check character finds the same person
    if nid.endswith("X"):
        lower = api.get("/fhir/DiagnosticReport", params={"patient.identifier": f"{NATIONAL}|{nid.lower()}"}).json()
        assert len(lower["entry"]) == 2
    # a hospital's MRN finds only that hospital's reports
    mrn = pa["identifier"][0]
    only_a = api.get("/fhir/DiagnosticReport", params={"patient.identifier": f"{mrn['system']}|{mrn['value']}"}).json()
    assert [e["resource"]["id"] for e in only_a["entry"]] == [ra["id"]]
    # and the Patient search by national identifier finds both local identities
    pats = api.get("/fhir/Patient", params={"identifier": f"{NATIONAL}|{nid}"}).json()
    assert {e["resource"]["id"] for e in pats["entry"]} == {pa["id"], pb["id"]}


def test_a_patient_needs_a_valid_national_identifier(api: Api) -> None:
    body = {
        "resourceType": "Patient",
        "identifier": [{"system": "http://hosp-a.example/mrn", "value": unique("A")}],
        "managingOrganization": {"reference": "Organization/hosp-a"},
    }
    r = api.post("/fhir/Patient", body, who="hosp-a-system")
    assert r.status_code == 422
    assert "national identifier" in r.json()["issue"][0]["diagnostics"]
    nid = resident_id(204)
    bad = nid[:-1] + ("0" if nid[-1] != "0" else "1")
    body["identifier"].append({"system": NATIONAL, "value": bad})
    r = api.post("/fhir/Patient", body, who="hosp-a-system")
    assert r.status_code == 400
    assert "check digit" in r.text
    assert bad not in r.text  # the error never echoes the number
    body["identifier"][1] = {"system": NATIONAL, "value": "12345"}
    assert api.post("/fhir/Patient", body, who="hosp-a-system").status_code == 400


def test_other_id_types_link_separately(api: Api) -> None:
    p1 = api.patient(
        "hosp-a",
        unique("A"),
        None,
        identifier=[
            {"system": "http://hosp-a.example/mrn", "value": unique("A")},
            {"system": PASSPORT, "value": "E12345678"},
        ],
    )
    p2 = api.patient(
        "hosp-b",
        unique("B"),
        None,
        identifier=[
            {"system": "http://hosp-b.example/mrn", "value": unique("B")},
            {"system": PASSPORT, "value": "e12345678"},
        ],
    )
    found = api.get("/fhir/Patient", params={"identifier": f"{PASSPORT}|E12345678"}).json()
    assert {e["resource"]["id"] for e in found["entry"]} == {p1["id"], p2["id"]}
    # a passport number is shorter than a resident ID: only its last 2 characters are shown
    assert [i["value"] for i in p1["identifier"] if i["system"] == PASSPORT] == ["*******78"]


def test_read_modify_write_keeps_the_masked_identifier(api: Api) -> None:
    nid = resident_id(205)
    p = api.patient("hosp-a", unique("A"), nid)
    p["gender"] = "male"
    r = api.put(f"/fhir/Patient/{p['id']}", p, who="hosp-a-system")
    assert r.status_code == 200, r.text
    found = api.get("/fhir/Patient", params={"identifier": f"{NATIONAL}|{nid}"}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [p["id"]]
    # a masked value cannot create a new patient
    fresh = {k: v for k, v in p.items() if k not in ("id", "meta")}
    fresh["identifier"][0]["value"] = unique("A")
    assert api.post("/fhir/Patient", fresh, who="hosp-a-system").status_code == 400


def test_pix_query_cross_references_local_identifiers(api: Api) -> None:
    nid = resident_id(206)
    mrn_a, mrn_b = unique("A"), unique("B")
    pa = api.patient("hosp-a", mrn_a, nid)
    pb = api.patient("hosp-b", mrn_b, nid)
    r = api.get("/fhir/Patient/$ihe-pix", params={"sourceIdentifier": f"http://hosp-a.example/mrn|{mrn_a}"})
    assert r.status_code == 200, r.text
    params = r.json()["parameter"]
    identifiers = [p["valueIdentifier"] for p in params if p["name"] == "targetIdentifier"]
    targets = {p["valueReference"]["reference"] for p in params if p["name"] == "targetId"}
    assert identifiers == [{"system": "http://hosp-b.example/mrn", "value": mrn_b}]  # source not echoed
    assert targets == {f"Patient/{pa['id']}", f"Patient/{pb['id']}"}
    assert nid not in r.text
    # by national identifier, restricted to one target system
    r = api.get(
        "/fhir/Patient/$ihe-pix",
        params=[("sourceIdentifier", f"{NATIONAL}|{nid}"), ("targetSystem", "http://hosp-a.example/mrn")],
    )
    ids = [p["valueIdentifier"]["value"] for p in r.json()["parameter"] if p["name"] == "targetIdentifier"]
    assert ids == [mrn_a]


def test_pix_errors_as_iti_83_defines_them(api: Api) -> None:
    mrn = unique("A")
    api.patient("hosp-a", mrn, resident_id(207))
    r = api.get("/fhir/Patient/$ihe-pix", params={"sourceIdentifier": "http://hosp-a.example/mrn|nobody"})
    assert r.status_code == 404
    assert r.json()["issue"][0]["diagnostics"] == "sourceIdentifier Patient Identifier not found"
    r = api.get("/fhir/Patient/$ihe-pix", params={"sourceIdentifier": "urn:oid:9.9.9|x"})
    assert r.status_code == 400
    assert r.json()["issue"][0]["code"] == "code-invalid"
    assert r.json()["issue"][0]["diagnostics"] == "sourceIdentifier Assigning Authority not found"
    r = api.get(
        "/fhir/Patient/$ihe-pix",
        params=[("sourceIdentifier", f"http://hosp-a.example/mrn|{mrn}"), ("targetSystem", "urn:oid:9.9.9")],
    )
    assert r.status_code == 403
    assert r.json()["issue"][0]["diagnostics"] == "targetSystem not found"
    assert api.get("/fhir/Patient/$ihe-pix").status_code == 400


def test_no_plaintext_national_identifier_anywhere_in_the_database(api: Api) -> None:
    ids = [resident_id(300 + i) for i in range(3)]
    for nid in ids:
        p = api.patient(
            "hosp-a",
            unique("A"),
            nid,
            text={"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">身份证 {nid}</div>'},
        )
        api.report("hosp-a", p["id"], unique("R"))
        api.get("/fhir/DiagnosticReport", params={"patient.identifier": f"{NATIONAL}|{nid}"})
        api.get("/fhir/Patient/$ihe-pix", params={"sourceIdentifier": f"{NATIONAL}|{nid}"})
        # refused (managed by another hospital): a refusal must not leave the number behind either
        refused = {"resourceType": "Patient", "identifier": [{"system": NATIONAL, "value": nid}],
                   "managingOrganization": {"reference": "Organization/hosp-a"}}  # fmt: skip
        assert api.post("/fhir/Patient", refused, who="hosp-b-system").status_code == 403
    dump = _dump(api)
    assert len(dump) > 10_000
    for nid in ids:
        assert nid not in dump
        assert nid.lower() not in dump
        assert nid[:17] not in dump


def _dump(api: Api) -> str:
    """Every row of every table, as text."""
    engine = api.ctx.engine
    out: list[str] = []
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            tables = [r[0] for r in conn.execute(text("select name from sqlite_master where type='table'"))]
        else:
            tables = [r[0] for r in conn.execute(text("select tablename from pg_tables where schemaname='public'"))]
        for table in tables:
            for row in conn.execute(text(f'select * from "{table}"')):
                out.append(" ".join(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in row))
    return "\n".join(out)


def test_a_full_width_resident_id_is_the_same_person_as_its_ascii_spelling(api: Api) -> None:
    """NFKC folds full-width digits (an IME's default in Chinese): one person, one master key, whatever was typed."""
    nid = resident_id(4321)
    wide = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in nid)
    a = api.patient("hosp-a", unique("A"), wide)
    b = api.patient("hosp-b", unique("B"), nid)
    assert a["identifier"][1]["value"] == b["identifier"][1]["value"]  # the same masked form
    found = api.get(f"/fhir/Patient?identifier={NATIONAL}|{wide}", who="admin").json()
    assert {e["resource"]["id"] for e in found["entry"]} == {a["id"], b["id"]}
    arabic = "".join(chr(ord(c) - 0x30 + 0x0660) if c.isdigit() else c for c in nid)
    r = api.post(
        "/fhir/Patient",
        {
            "resourceType": "Patient",
            "identifier": [{"system": NATIONAL, "value": arabic}],
            "managingOrganization": {"reference": "Organization/hosp-a"},
        },
        who="hosp-a-system",
    )
    assert r.status_code == 400
