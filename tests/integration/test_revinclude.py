"""``_revinclude`` (FHIR R4 search.html §3.1.1.5.4): resources referring to the matches, as ``search.mode=include``,
limited by the one access policy exactly as a search of their type would be — no other hospital's record a principal
may not see comes back through it — and declared in the CapabilityStatement (``searchRevInclude``)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import Api, new_resident_id, unique


def _nid() -> str:
    return new_resident_id()


def _found(api: Api, rtype: str, params: dict[str, str], who: str = "admin", **headers: str) -> dict[str, Any]:
    r = api.get(f"/fhir/{rtype}", params=params, who=who, headers=headers)
    assert r.status_code == 200, r.text
    bundle = r.json()
    out: dict[str, Any] = {"match": set(), "include": set(), "outcome": []}
    for e in bundle.get("entry", []):
        mode = e["search"]["mode"]
        if mode == "outcome":
            out["outcome"].append(e["resource"])
        else:
            out[mode].add((e["resource"]["resourceType"], e["resource"]["id"]))
    return out


@pytest.fixture(scope="module")
def people(api: Api) -> dict[str, str]:
    nid = _nid()
    pa1 = api.patient("hosp-a", unique("A"), nid)["id"]
    pb1 = api.patient("hosp-b", unique("B"), nid)["id"]  # the same person registered at B: in B's care context
    pa2 = api.patient("hosp-a", unique("A"), _nid())["id"]  # only at A: outside B's care context
    return {
        "pa1": pa1, "pb1": pb1, "pa2": pa2,
        "ra1": api.report("hosp-a", pa1, unique("R"))["id"], "rb1": api.report("hosp-b", pb1, unique("R"))["id"],
        "ra2": api.report("hosp-a", pa2, unique("R"))["id"],
    }  # fmt: skip


def test_revinclude_returns_the_referring_resources_as_includes(api: Api, people: dict[str, str]) -> None:
    got = _found(api, "Patient", {"_id": f"{people['pa1']},{people['pa2']}", "_revinclude": "DiagnosticReport:subject"})
    assert got["match"] == {("Patient", people["pa1"]), ("Patient", people["pa2"])}
    assert got["include"] == {("DiagnosticReport", people["ra1"]), ("DiagnosticReport", people["ra2"])}
    by_patient = _found(api, "Patient", {"_id": people["pa1"], "_revinclude": "DiagnosticReport:patient"})
    assert by_patient["include"] == {("DiagnosticReport", people["ra1"])}
    # with a target type, and several at once (reports and the hospital's patients)
    org = _found(api, "Organization", {"_id": "hosp-a", "_revinclude": "Patient:organization"})
    assert {("Patient", people["pa1"]), ("Patient", people["pa2"])} <= org["include"]
    assert ("DiagnosticReport", people["ra1"]) in _found(
        api, "Organization", {"_id": "hosp-a", "_revinclude": "DiagnosticReport:performer:Organization"}
    )["include"]


def test_revinclude_never_shows_what_the_principal_may_not_see(api: Api, people: dict[str, str]) -> None:
    """B's clinician: A's report of P1 (in B's care context) comes back; A's report of P2 (outside it) and A's
    Patient of P2 never do — neither through the Patients nor through hospital A's Organization."""
    got = _found(api, "Patient", {"_id": f"{people['pa1']},{people['pa2']}", "_revinclude": "DiagnosticReport:subject"},
                 who="dr-b")  # fmt: skip
    assert got["match"] == {("Patient", people["pa1"])}
    assert got["include"] == {("DiagnosticReport", people["ra1"])}
    org = _found(api, "Organization", {"_id": "hosp-a", "_revinclude": "Patient:organization"}, who="dr-b")
    assert ("Patient", people["pa1"]) in org["include"]
    assert ("Patient", people["pa2"]) not in org["include"]
    reports = _found(api, "Organization", {"_id": "hosp-a", "_revinclude": "DiagnosticReport:performer"}, who="dr-b")
    assert ("DiagnosticReport", people["ra1"]) in reports["include"]
    assert ("DiagnosticReport", people["ra2"]) not in reports["include"]
    # C's clinician has nobody of them in care: nothing at all
    none = _found(api, "Organization", {"_id": "hosp-a", "_revinclude": "Patient:organization"}, who="dr-c")
    assert not {("Patient", people["pa1"]), ("Patient", people["pa2"])} & none["include"]


def test_an_unsupported_revinclude_is_ignored_unless_strict(api: Api, people: dict[str, str]) -> None:
    params = {"_id": people["ra1"], "_revinclude": "Provenance:target"}
    got = _found(api, "DiagnosticReport", params)
    assert got["match"] == {("DiagnosticReport", people["ra1"])} and not got["include"]
    assert "Provenance:target" in str(got["outcome"])
    r = api.get("/fhir/DiagnosticReport", params=params, headers={"Prefer": "handling=strict"})
    assert r.status_code == 400 and "_revinclude=Provenance:target is not supported" in r.text
    r = api.get("/fhir/Patient", params={"_id": people["pa1"], "_revinclude:iterate": "DiagnosticReport:subject"})
    assert r.status_code == 400 and "modifier :iterate is not supported" in r.text


def test_the_capability_statement_declares_search_rev_include(api: Api) -> None:
    statement = api.get("/fhir/metadata", who=None).json()
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert "DiagnosticReport:subject" in by_type["Patient"]["searchRevInclude"]
    assert "Patient:organization" in by_type["Organization"]["searchRevInclude"]
    assert by_type["DiagnosticReport"]["searchRevInclude"] == []
