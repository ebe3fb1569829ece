"""No input is a server error (docs/design.md §6): hypothesis builds searches for every parameter type the registry
parses (dates, numbers, tokens, references, strings; modifiers, prefixes, chains, control parameters; quantities, which
it does not support) and Bundles of every shape (batch and transaction, entries with missing fields and wrong types),
and every answer is below 500 — a 4xx is an OperationOutcome, a batch's entries too. Derandomized, no example
database: the same examples on every run, on SQLite and PostgreSQL (``HR_FUZZ_EXAMPLES`` changes how many)."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlencode

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry.fhir.search_params import SEARCH_PARAMS
from tests.integration.conftest import NATIONAL, Api

EXAMPLES = int(os.environ.get("HR_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
TYPES = sorted(SEARCH_PARAMS)

# ---------------------------------------------------------------------------------------------------- value pieces
digits = st.text("0123456789", min_size=1, max_size=6)
huge = st.sampled_from(["9" * 30, "9" * 5000, "1" * 19, "²", "٣", "-1", "+5", "1e9", "0x10", "1.5", "", " 7"])
offsets = st.sampled_from(["Z", "+08:00", "-14:00", "+14:00", "+14:01", "+99:00", "-24:00", "+05:60", "+8", ""])
years = st.sampled_from(["0000", "0001", "1980", "2025", "9999", "10000", "99"])
dates = st.builds(
    lambda y, m, d, t, o: f"{y}{m}{d}{t}{o}",
    years, st.sampled_from(["", "-01", "-02", "-12", "-13", "-00"]), st.sampled_from(["", "-01", "-29", "-31", "-32"]),
    st.sampled_from(["", "T00:00", "T23:59:59", "T23:59:60", "T24:00:00", "T12:00:00.123456789", "T1"]), offsets,
)  # fmt: skip
prefixes = st.sampled_from(["", "eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", "xx"])
date_values = st.builds(lambda p, d: p + d, prefixes, dates)
systems = st.sampled_from(["http://loinc.org", NATIONAL, "http://hosp-a.example/mrn", "urn:dicom:uid", "", "|", "a|b"])
tokens = st.one_of(
    st.builds(lambda s, c: f"{s}|{c}", systems, st.text(max_size=12)),
    st.text(max_size=12),
    st.sampled_from(["|", "||", "|x", "x|", "\\,", "11010119800506002X", f"{NATIONAL}|11010119800506002X"]),
)
references = st.one_of(
    st.builds(lambda t, i: f"{t}/{i}", st.sampled_from([*TYPES, "patient", "", "X"]), st.text(max_size=10)),
    st.sampled_from(["http://testserver/fhir/Patient/x", "http://elsewhere/fhir/Patient/x", "Patient/x/_history/1",
                     "Patient/x/_history/" + "9" * 40, "/", "//", "urn:uuid:x", "Patient?identifier=a|b"]),
    st.text(max_size=10),
)  # fmt: skip
quantities = st.builds(lambda p, n, u: f"{p}{n}|http://unitsofmeasure.org|{u}", prefixes, huge | digits,
                       st.sampled_from(["g/L", "", "|"]))  # fmt: skip
strings = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
atoms = st.one_of(date_values, tokens, references, quantities, strings, huge, digits)
values = st.lists(atoms, min_size=1, max_size=4).map(",".join)
modifiers = st.sampled_from(["", ":exact", ":contains", ":missing", ":not", ":Patient", ":text", ":above", ":x", ":"])
control = st.sampled_from(["_count", "_sort", "_include", "_summary", "_total", "_cursor", "_format", "_id",
                           "_lastUpdated", "_elements", "_has:Observation:patient:code"])  # fmt: skip


@st.composite
def names(draw: st.DrawFn, rtype: str) -> str:
    known = sorted(SEARCH_PARAMS[rtype])
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return draw(st.sampled_from(known)) + draw(modifiers)
    if choice == 1:  # a chain: reference param, optional type, inner param and modifier
        ref = draw(st.sampled_from([*known, "patient", "subject", "x"]))
        target = draw(st.sampled_from(["", ":Patient", ":Organization", ":Nope"]))
        inner = draw(st.sampled_from(["identifier", "name", "birthdate", "gender", "organization", "x", "a.b"]))
        return f"{ref}{target}.{inner}{draw(modifiers)}"
    if choice == 2:
        return draw(control)
    if choice == 3:
        return draw(st.sampled_from(["value-quantity", "code-value-quantity", "near", "_text", "_content"]))
    return draw(st.text(min_size=1, max_size=12))


@st.composite
def searches(draw: st.DrawFn) -> tuple[str, list[tuple[str, str]], bool]:
    rtype = draw(st.sampled_from(TYPES))
    params = draw(st.lists(st.tuples(names(rtype), values), min_size=1, max_size=5))
    return rtype, params, draw(st.booleans())


def _no_server_error(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code < 500, (r.request.method, str(r.request.url)[:300], r.status_code, r.text[:300])
    body: dict[str, Any] = r.json()
    if r.status_code >= 400:
        assert body["resourceType"] == "OperationOutcome", body
    return body


@FUZZ
@given(search=searches())
def test_no_search_is_a_server_error(api: Api, search: tuple[str, list[tuple[str, str]], bool]) -> None:
    rtype, params, lenient = search
    headers = {"Prefer": "handling=lenient"} if lenient else {}
    body = _no_server_error(api.get(f"/fhir/{rtype}?{urlencode(params)}", who="hosp-b-system", headers=headers))
    assert body["resourceType"] in ("Bundle", "OperationOutcome")


@FUZZ
@given(
    params=st.lists(
        st.tuples(
            st.sampled_from(["date", "agent", "patient", "action", "outcome", "entity-type", "_count", "_before", "x"]),
            values,
        ),
        min_size=1,
        max_size=4,
    )
)
def test_no_audit_search_is_a_server_error(api: Api, params: list[tuple[str, str]]) -> None:
    _no_server_error(api.get(f"/fhir/AuditEvent?{urlencode(params)}"))


# ---------------------------------------------------------------------------------------------------- Bundles
junk = st.one_of(st.none(), st.booleans(), st.integers(-2, 10**20), st.text(max_size=8), st.just([]), st.just({}))
resource_types = st.sampled_from(["Patient", "Observation", "DiagnosticReport", "Organization", "Bundle",
                                  "Nope", "ServiceRequest", "ImagingStudy"])  # fmt: skip
fields = st.sampled_from(
    [
        "id",
        "status",
        "code",
        "subject",
        "identifier",
        "effectiveDateTime",
        "issued",
        "meta",
        "managingOrganization",
        "performer",
        "result",
        "birthDate",
        "name",
        "valueQuantity",
    ]
)
field_values = st.one_of(
    junk, date_values, st.builds(lambda r: {"reference": r}, references),
    st.builds(lambda s, v: [{"system": s, "value": v}], systems, st.text(max_size=8)),
    st.just({"coding": [{"system": "http://loinc.org", "code": "718-7"}]}), st.just("final"),
    st.just({"tag": [{"system": "https://hr-registry.org.cn/fhir/CodeSystem/hr-mark", "code": "HR"}]}),
)  # fmt: skip
resources = st.one_of(
    st.builds(lambda t, f: {"resourceType": t, **f}, resource_types, st.dictionaries(fields, field_values, max_size=6)),
    junk,
)
urls = st.one_of(resource_types, st.builds(lambda t, i: f"{t}/{i}", resource_types, st.text(max_size=6)),
                 st.builds(lambda t, q: f"{t}?{q}", resource_types, st.sampled_from(["identifier=a|b", "", "x=1",
                           "identifier=http://hosp-a.example/mrn|M", "_id=1,2", "birthdate=+99"])), junk)  # fmt: skip
requests = st.one_of(
    st.fixed_dictionaries({"method": st.sampled_from(["POST", "PUT", "DELETE", "GET", "PATCH", "x"]) | junk},
                          optional={"url": urls, "ifNoneExist": st.text(max_size=20) | junk,
                                    "ifMatch": st.sampled_from(['W/"1"', "1", ""]) | junk}),
    junk,
)  # fmt: skip
entries = st.one_of(
    st.fixed_dictionaries({}, optional={"fullUrl": st.sampled_from(["urn:uuid:00000000-0000-4000-8000-000000000001",
                                                                    "urn:uuid:x", "Patient/1"]) | junk,
                                        "resource": resources, "request": requests}),
    junk,
)  # fmt: skip
bundles = st.one_of(
    st.fixed_dictionaries({"resourceType": st.just("Bundle")},
                          optional={"type": st.sampled_from(["transaction", "batch", "collection", "x"]) | junk,
                                    "entry": st.lists(entries, max_size=4) | junk}),
    junk, resources,
)  # fmt: skip


@FUZZ
@given(bundle=bundles)
def test_no_bundle_is_a_server_error(api: Api, bundle: Any) -> None:
    r = api.post("/fhir", json.dumps(bundle), who="hosp-a-system")  # json: integers past 64 bits too
    body = _no_server_error(r)
    if r.status_code == 200 and body.get("type") == "batch-response":
        for entry in body.get("entry", []):
            status = entry["response"]["status"]
            assert not status.startswith("5"), entry
            outcome = entry["response"].get("outcome")
            if status[:1] == "4":
                assert outcome is None or outcome["resourceType"] == "OperationOutcome"
