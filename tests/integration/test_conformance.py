"""The CapabilityStatement tells the truth about what it names (FHIR R4 capabilitystatement.html,
operationdefinition.html, searchparameter.html), on SQLite and PostgreSQL: every ``definition`` resolves — the
registry's own at ``/fhir/OperationDefinition/{id}`` and ``/fhir/SearchParameter/{id}`` without a token, as valid R4
resources saying what the statement says; R4's by their canonical — operations sit where they are served, and the
AuditEvent ``agent`` parameter is R4's reference parameter, answered as such."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fhir.resources.R4B.operationdefinition import OperationDefinition
from fhir.resources.R4B.searchparameter import SearchParameter
from fhirclient.models.operationdefinition import OperationDefinition as R4OperationDefinition
from fhirclient.models.searchparameter import SearchParameter as R4SearchParameter

from registry.fhir.search_params import SEARCH_PARAMS
from registry.route_table import served_routes
from registry.services.audit import CLIENT_ID_SYSTEM
from registry.services.audit import SEARCH_PARAMETERS as AUDIT_SEARCH_PARAMETERS
from tests.integration.conftest import Api

HR = "https://hr-registry.org.cn/fhir/"
R4_SEARCH_PARAMETER = "http://hl7.org/fhir/SearchParameter/"
MODELS = {"OperationDefinition": (OperationDefinition, R4OperationDefinition),
          "SearchParameter": (SearchParameter, R4SearchParameter)}  # fmt: skip


def _statement(api: Api) -> dict[str, Any]:
    r = api.get("/fhir/metadata", who=None)
    assert r.status_code == 200, r.text
    return dict(r.json()["rest"][0])


def _definitions(rest: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(where, kind, entry) for every searchParam and operation the statement declares."""
    found = [("system", "operation", op) for op in rest.get("operation", [])]
    for resource in rest["resource"]:
        found += [(resource["type"], "searchParam", p) for p in resource.get("searchParam", [])]
        found += [(resource["type"], "operation", op) for op in resource.get("operation", [])]
    return found


def _resolve(api: Api, canonical: str) -> dict[str, Any]:
    """A canonical of the registry, read from the server as ``[base]/{Type}/{id}`` without a token."""
    rtype, rid = canonical.removeprefix(HR).split("/")
    r = api.get(f"/fhir/{rtype}/{rid}", who=None)
    assert r.status_code == 200, (canonical, r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/fhir+json")
    body = dict(r.json())
    assert body["resourceType"] == rtype and body["id"] == rid and body["url"] == canonical
    r4b, r4 = MODELS[rtype]
    r4b.model_validate(body)  # fhir.resources (R4B)
    r4(body, strict=True)  # fhirclient's R4 classes: unknown or missing elements raise
    return body


def test_every_definition_the_statement_names_resolves(api: Api) -> None:
    rest = _statement(api)
    declared = _definitions(rest)
    assert len(declared) > 60
    local = 0
    for where, kind, entry in declared:
        canonical = entry.get("definition")
        assert canonical, (where, kind, entry)
        if canonical.startswith("http://hl7.org/"):
            assert kind == "searchParam" and canonical.startswith(R4_SEARCH_PARAMETER), (where, entry)
            assert re.fullmatch(r"[A-Za-z]+-[A-Za-z-]+", canonical.removeprefix(R4_SEARCH_PARAMETER)), canonical
            continue
        assert canonical.startswith(HR), (where, entry)  # nothing else: the server resolves every other canonical
        body = _resolve(api, canonical)
        local += 1
        if kind == "searchParam":
            assert (body["code"], body["type"]) == (entry["name"], entry["type"]), (where, body)
            assert where in body["base"]
            assert body["expression"].startswith(f"{where}.")
        else:
            assert body["code"] == entry["name"] and body["kind"] == "operation"
            if where == "system":
                assert body["system"] is True
            else:
                assert body["type"] is True and where in body["resource"]
    assert local == 7  # 3 operations, 4 search parameters of the registry's own


def test_operations_are_declared_where_they_are_served(api: Api) -> None:
    """Every ``$operation`` route is declared on its type (none is system-level), and nothing else is declared."""
    rest = _statement(api)
    served = {(path.split("/")[2], path.split("$")[1]) for _, path in served_routes(api.client.app) if "$" in path}
    declared = {(where, op["name"]) for where, kind, op in _definitions(rest) if kind == "operation"}
    assert served == declared == {("ServiceRequest", "recognition-check"), ("ServiceRequest", "recognition-decision"),
                                  ("Patient", "ihe-pix")}  # fmt: skip
    assert "operation" not in rest


def test_the_operation_definitions_say_what_the_handlers_take(api: Api) -> None:
    check = _resolve(api, f"{HR}OperationDefinition/ServiceRequest-recognition-check")
    inputs = {p["name"]: (p["min"], p["max"], p.get("type")) for p in check["parameter"] if p["use"] == "in"}
    assert inputs == {"patientIdentifier": (0, "*", "Identifier"), "patient": (0, "1", "Reference"),
                      "order": (1, "*", "ServiceRequest")}  # fmt: skip
    (recognition,) = [p for p in check["parameter"] if p["use"] == "out"]
    assert "type" not in recognition and {p["name"] for p in recognition["part"]} >= {"status", "card", "candidate"}
    assert check["affectsState"] is True
    pix = _resolve(api, f"{HR}OperationDefinition/Patient-ihe-pix")
    assert pix["base"] == "https://profiles.ihe.net/ITI/PIXm/OperationDefinition/IHE.PIXm.pix"
    assert pix["affectsState"] is False  # invoked with GET
    decision = _resolve(api, f"{HR}OperationDefinition/ServiceRequest-recognition-decision")
    assert {p["name"] for p in decision["parameter"] if p["use"] == "in"} == {"card", "outcome", "reason", "comment"}


def test_conformance_resources_are_open_cached_and_404_when_unknown(api: Api) -> None:
    url = "/fhir/SearchParameter/DiagnosticReport-imaging-study"
    first = api.get(url, who=None)
    assert first.status_code == 200 and first.headers["etag"]
    again = api.get(url, who=None, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    for path in ("/fhir/SearchParameter/Patient-name", "/fhir/OperationDefinition/everything"):
        r = api.get(path, who=None)  # R4's own parameters are not republished here
        assert r.status_code == 404, r.text
        assert r.json()["resourceType"] == "OperationOutcome"
        assert "this server publishes" in r.json()["issue"][0]["diagnostics"]


def test_the_registrys_own_search_parameters_are_served_under_their_codes(api: Api) -> None:
    """Each one the statement names by the registry's canonical is a parameter its type's search takes."""
    rest = _statement(api)
    own = [(w, e) for w, k, e in _definitions(rest) if k == "searchParam" and e["definition"].startswith(HR)]
    assert {(w, e["name"]) for w, e in own} == {("DiagnosticReport", "imaging-study"), ("ImagingStudy", "based-on"),
                                                ("ConceptMap", "url"), ("ConceptMap", "source-system")}  # fmt: skip
    for rtype, entry in own:
        assert entry["name"] in SEARCH_PARAMS[rtype]
        value = "ImagingStudy/none" if entry["type"] == "reference" else "urn:x|none"
        if rtype == "ImagingStudy":
            value = "ServiceRequest/none"
        r = api.get(f"/fhir/{rtype}", params={entry["name"]: value})
        assert r.status_code == 200, r.text


# ------------------------------------------------------------------------------------------ AuditEvent agent
def test_the_audit_event_parameters_are_r4s_with_their_types(api: Api) -> None:
    rest = _statement(api)
    (audit,) = [r for r in rest["resource"] if r["type"] == "AuditEvent"]
    params = {p["name"]: p for p in audit["searchParam"]}
    assert set(params) == set(AUDIT_SEARCH_PARAMETERS)
    assert params["agent"] == {"name": "agent", "type": "reference",
                               "definition": f"{R4_SEARCH_PARAMETER}AuditEvent-agent"}  # fmt: skip
    assert params["patient"]["type"] == "reference" and params["date"]["type"] == "date"
    assert {params[n]["type"] for n in ("action", "outcome", "entity-type")} == {"token"}


def _agents(api: Api, **query: str) -> list[dict[str, Any]]:
    r = api.get("/fhir/AuditEvent", params={"_count": "200", **query})
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def _requestor(event: dict[str, Any]) -> str:
    return str(event["agent"][0]["who"]["identifier"]["value"])


@pytest.fixture(scope="module")
def audited(api: Api) -> None:
    """Reads by hospital B's system and its clinician, and by hospital A's system: audit rows of three clients of two
    organizations."""
    for who in ("hosp-b-system", "dr-b", "hosp-a-system"):
        assert api.get("/fhir/Organization/hosp-a", who=who).status_code == 200


@pytest.mark.usefixtures("audited")
def test_agent_is_answered_as_a_reference_with_the_identifier_modifier(api: Api) -> None:
    by_org = _agents(api, agent="Organization/hosp-b")
    assert {_requestor(e) for e in by_org} == {"hosp-b-system", "dr-b"}
    assert all(e["agent"][1]["who"]["reference"] == "Organization/hosp-b" for e in by_org)
    absolute = _agents(api, agent="http://testserver/fhir/Organization/hosp-b")
    assert {e["id"] for e in absolute} == {e["id"] for e in by_org}
    by_identifier = _agents(api, **{"agent:identifier": f"{CLIENT_ID_SYSTEM}|dr-b"})
    assert by_identifier and {_requestor(e) for e in by_identifier} == {"dr-b"}
    assert {e["id"] for e in _agents(api, **{"agent:identifier": "dr-b"})} == {e["id"] for e in by_identifier}
    assert {e["id"] for e in _agents(api, agent="dr-b")} == {e["id"] for e in by_identifier}  # the shorthand
    assert _agents(api, **{"agent:identifier": "http://other.example/ids|dr-b"}) == []
    assert _agents(api, agent="Practitioner/dr-b") == []
    # comma = OR, repetition = AND
    either = _agents(api, agent="dr-b,Organization/hosp-a")
    assert {_requestor(e) for e in either} == {"dr-b", "hosp-a-system"}
    both = _agents(api, agent=["Organization/hosp-b", "hosp-b-system"])
    assert both and {_requestor(e) for e in both} == {"hosp-b-system"}
