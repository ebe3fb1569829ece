"""Privacy without loopholes (DESIGN.md §4, §6), one test per way a national identifier used to slip out: JSON-escaped
identifiers stored in clear, identifiers as resource ids or hospital identifiers."""

from __future__ import annotations

import orjson

from tests.integration.conftest import NATIONAL, Api, resident_id, unique
from tests.integration.privacy_checks import database_text, leaks


def escaped(value: str, *, upper: bool = False) -> str:
    """Every character as a JSON ``\\uXXXX`` escape (RFC 8259 §7)."""
    return "".join(f"\\u{ord(c):04X}" if upper else f"\\u{ord(c):04x}" for c in value)


def resident_id_with_x(start: int) -> str:
    """A synthetic resident ID whose GB 11643 check character is X."""
    return next(nid for seed in range(start, start + 500) if (nid := resident_id(seed)).endswith("X"))


def shown(nid: str) -> str:
    return nid[:3] + "*" * (len(nid) - 7) + nid[-4:]


# ---------------------------------------------------------------------------------------------------- stored text
def test_a_national_id_written_with_json_escapes_is_stored_and_served_masked(api: Api) -> None:
    nid = resident_id_with_x(400)
    spelled = {
        "@MRN@": unique("A"),
        "@ESCAPED@": escaped(nid),
        "@UPPER@": escaped(nid, upper=True),
        "@LOWER@": nid.lower(),
        "@REFS@": "".join(f"&#{ord(c)};" for c in nid),
        "@MIXED@": escaped(nid[:9]) + nid[9:-1] + escaped(nid[-1].lower()),
    }
    body = (
        '{"resourceType": "Patient",\n  "identifier": ['
        '{"system": "http://hosp-a.example/mrn", "value": "@MRN@"}, '
        f'{{"system": "{NATIONAL}", "value": "@ESCAPED@"}}],\n'
        '  "text": {"status": "generated", "div": "<div xmlns=\\"http://www.w3.org/1999/xhtml\\">'
        '\\u8eab\\u4efd\\u8bc1 @UPPER@, @LOWER@, @REFS@</div>"},\n'
        '  "name": [{"text": "\\u5f20\\u4e09"}],\n'
        '  "extension": [{"url": "http://hosp-a.example/ext/weight", "valueDecimal": 135.50},\n'
        '                {"url": "http://hosp-a.example/ext/note", "valueString": "ID:@MIXED@"}],\n'
        '  "managingOrganization": {"reference": "Organization/hosp-a"}}'
    )
    for placeholder, value in spelled.items():
        body = body.replace(placeholder, value)
    r = api.post("/fhir/Patient", body, who="hosp-a-system")
    assert r.status_code == 201, r.text
    served = api.get(f"/fhir/Patient/{r.json()['id']}").text
    assert leaks(served, [nid]) == [] and leaks(orjson.dumps(orjson.loads(served)).decode(), [nid]) == []
    assert leaks(database_text(api.ctx.engine), [nid]) == []
    patient = orjson.loads(served)
    assert [i["value"] for i in patient["identifier"] if i["system"] == NATIONAL] == [shown(nid)]
    assert patient["extension"][1]["valueString"] == f"ID:{shown(nid)}"
    assert patient["text"]["div"].count(shown(nid)) == 3
    # every other byte as it was sent: the decimal as written, the untouched escapes, the whitespace
    assert '"valueDecimal": 135.50}' in served
    assert '"name": [{"text": "\\u5f20\\u4e09"}]' in served
    assert ',\n                {"url": "http://hosp-a.example/ext/note"' in served
    # and the person is still found by the number, in any spelling
    for spelling in (nid, nid.lower(), f" {nid} "):
        found = api.get("/fhir/Patient", params={"identifier": f"{NATIONAL}|{spelling}"}).json()
        assert [e["resource"]["id"] for e in found["entry"]] == [patient["id"]]


def test_a_reference_written_with_escapes_is_resolved_without_leaking_the_number_or_its_key(api: Api) -> None:
    # an absolute reference is stored relative; written with an escape it is not found as text, and the resource
    # is then serialized from its parsed form — which must be masked too, and never carry the keyed hash
    nid = resident_id(405)
    base = api.ctx.settings.fhir_base_url
    body = (
        '{"resourceType": "Patient", "identifier": [{"system": "http://hosp-a.example/mrn", "value": "@MRN@"},'
        f' {{"system": "{NATIONAL}", "value": "{nid}"}}],'
        f' "text": {{"status": "generated", "div": "<div xmlns=\\"http://www.w3.org/1999/xhtml\\">{escaped(nid)}</div>"}},'
        f' "managingOrganization": {{"reference": "{escaped(base)}/Organization/hosp-a"}}}}'
    ).replace("@MRN@", unique("A"))
    r = api.post("/fhir/Patient", body, who="hosp-a-system")
    assert r.status_code == 201, r.text
    served = api.get(f"/fhir/Patient/{r.json()['id']}").json()
    assert served["managingOrganization"] == {"reference": "Organization/hosp-a"}
    assert "_key" not in orjson.dumps(served).decode()
    assert leaks(orjson.dumps(served).decode(), [nid]) == [] and shown(nid) in served["text"]["div"]
    assert leaks(database_text(api.ctx.engine), [nid]) == []


def test_a_national_id_as_a_resource_id_is_refused(api: Api) -> None:
    nid = resident_id(410)
    other = resident_id(411)
    body = {
        "resourceType": "Patient",
        "id": nid,
        "identifier": [
            {"system": "http://hosp-a.example/mrn", "value": unique("A")},
            {"system": NATIONAL, "value": nid},
        ],
        "managingOrganization": {"reference": "Organization/hosp-a"},
    }
    r = api.put(f"/fhir/Patient/{nid}", body, who="hosp-a-system")
    assert r.status_code == 400, r.text
    assert "resource id must not be a national identifier" in r.text
    body["id"] = other  # any valid resident ID number, not only the patient's own
    r = api.put(f"/fhir/Patient/{other}", body, who="hosp-a-system")
    assert r.status_code == 400, r.text
    assert api.get(f"/fhir/Patient/{nid}").status_code == 404
    assert leaks(database_text(api.ctx.engine), [nid, other]) == []


def test_a_hospital_identifier_holding_the_national_id_is_refused(api: Api) -> None:
    nid = resident_id(412)
    body = {
        "resourceType": "Patient",
        "identifier": [{"system": "http://hosp-a.example/mrn", "value": nid}, {"system": NATIONAL, "value": nid}],
        "managingOrganization": {"reference": "Organization/hosp-a"},
    }
    r = api.post("/fhir/Patient", body, who="hosp-a-system")
    assert r.status_code == 400, r.text
    assert "Patient.identifier[0]" in r.text
    assert leaks(database_text(api.ctx.engine), [nid]) == []
