"""Property (docs/design.md §4, §6): a national identifier of any configured system, in any spelling a client can send —
JSON ``\\uXXXX`` escapes (mixed-case hex), a lower-case ``x`` check character, letters in either case, spaces around
and inside, percent-encoding of any character in any query parameter, a form post, a CDS Hooks prefetch, a
``$recognition-check`` Parameters, an HL7 ORU^R01 through the adapter — is never left in clear (nor normalized, nor
in a spelling that decodes to it) in any column of any table, in the audit trail as an admin reads it, or in any log
record (every record at DEBUG on the root logger; uvicorn's access-log record formatted as uvicorn writes it), and the
patient's name is in no log record.

One app per backend (the module's ``api``); each example sends every channel once with freshly drawn spellings.
Records of the test's own HTTP client (``httpx``, ``httpcore``) are not the registry's and are left out.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from adapters.codes import Coder, load_catalog, read_code_map
from adapters.hl7v2.processor import Hl7Processor
from adapters.push.outbox import Outbox
from registry.services.identity import RESIDENT_ID, resident_id_check_char
from registry.settings import Settings
from tests.integration.conftest import Api, unique
from tests.integration.privacy_checks import (
    CLIENT_LOGGERS,
    access_record,
    audit_text,
    database_text,
    leaks,
    log_text,
)
from tests.unit.adapters.conftest import DATA, hosp_a_config

SYSTEMS: dict[str, str] = dict(Settings.model_fields["national_id_systems"].default)
PID3_TYPE = {RESIDENT_ID: "NNCHN", "passport": "PPN", "hk-macao-permit": "HKMP", "taiwan-permit": "TWP",
             "foreigner-permanent-residence": "FPR"}  # fmt: skip
CBC = (DATA / "hl7" / "oru_cbc_final.hl7").read_bytes().decode()

# ---------------------------------------------------------------------------------------------------- numbers
_NOT_HEX = "GHJKLMNPRSTUVWYZ"  # so a drawn number can never turn up inside a hash or a uuid by chance


@st.composite
def resident_ids(draw: st.DrawFn) -> str:
    """GB 11643-1999: region, birth date, sequence, ISO 7064 MOD 11-2 check character."""
    region = draw(st.sampled_from(["110101", "110105", "120101", "310104", "440305", "370102", "500103"]))
    born = draw(st.dates(date(1930, 1, 1), date(2015, 12, 31)))
    body = f"{region}{born:%Y%m%d}{draw(st.integers(0, 999)):03d}"
    return body + resident_id_check_char(body)


def _alnum(letters: int, digits: int) -> st.SearchStrategy[str]:
    return st.builds(
        str.__add__,
        st.text(_NOT_HEX, min_size=letters, max_size=letters),
        st.text("0123456789", min_size=digits, max_size=digits + 1),
    )


NUMBERS: dict[str, st.SearchStrategy[str]] = {
    RESIDENT_ID: resident_ids(),
    "passport": _alnum(1, 8),
    "hk-macao-permit": _alnum(1, 8),
    "taiwan-permit": _alnum(1, 8),
    "foreigner-permanent-residence": _alnum(3, 12),
}
NATIONAL = st.sampled_from(sorted(SYSTEMS.items())).flatmap(
    lambda item: st.tuples(st.just(item[0]), st.just(item[1]), NUMBERS[item[1]])
)
NAMES = st.tuples(st.sampled_from(["司马", "欧阳", "诸葛", "东方"]), st.text("明华静涛瑶鹏娜", min_size=2, max_size=2))


# ---------------------------------------------------------------------------------------------------- spellings
@st.composite
def client_spelling(draw: st.DrawFn, value: str) -> str:
    """The same number as the server reads it: letter case, spaces around and inside (normalized away)."""
    spelled = "".join(c.lower() if c.isalpha() and draw(st.booleans()) else c for c in value)
    if draw(st.booleans()):
        cut = draw(st.integers(1, len(spelled) - 1))
        spelled = spelled[:cut] + " " + spelled[cut:]
    return draw(st.sampled_from(["", " "])) + spelled + draw(st.sampled_from(["", "  "]))


@st.composite
def json_spelling(draw: st.DrawFn, value: str) -> str:
    """The inside of a JSON string: each character as itself or as ``\\uXXXX`` with lower- or upper-case hex."""
    out = []
    for c in value:
        how = draw(st.sampled_from(["raw", "lower", "upper"]))
        out.append(c if how == "raw" else f"\\u{ord(c):04x}" if how == "lower" else f"\\u{ord(c):04X}")
    return "".join(out)


@st.composite
def percent_spelling(draw: st.DrawFn, value: str) -> str:
    """A query-string value: each letter or digit as itself or ``%XX`` (either case), everything else encoded."""
    out = []
    for c in value:
        if (c.isascii() and c.isalnum() and draw(st.booleans())) or (c in "/:.-" and draw(st.booleans())):
            out.append(c)
        elif c == " ":
            out.append(draw(st.sampled_from(["+", "%20"])))
        else:
            code = "".join(f"%{b:02X}" for b in c.encode())
            out.append(code.lower() if draw(st.booleans()) else code)
    return "".join(out)


@dataclass(frozen=True)
class Case:
    system: str
    id_type: str
    value: str
    name: tuple[str, str]
    spellings: tuple[str, ...]  # client spellings, one per channel
    json: tuple[str, ...]  # JSON spellings of those
    query: tuple[str, ...]  # percent-encoded "system|value" tokens
    bare: str  # a percent-encoded bare value
    unknown_parameter: str


CHANNELS = 8


@st.composite
def cases(draw: st.DrawFn) -> Case:
    system, id_type, value = draw(NATIONAL)
    spellings = tuple(draw(client_spelling(value)) for _ in range(CHANNELS))
    pipe = draw(st.sampled_from(["|", "%7C", "%7c"]))
    return Case(
        system,
        id_type,
        value,
        draw(NAMES),
        spellings,
        tuple(draw(json_spelling(s)) for s in spellings),
        tuple(draw(percent_spelling(system)) + pipe + draw(percent_spelling(s)) for s in spellings),
        draw(percent_spelling(spellings[0])),
        draw(st.sampled_from(["nid", "x-national-id", "idcard", "_has"])),
    )


# ---------------------------------------------------------------------------------------------------- capture
class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(CLIENT_LOGGERS):
            self.records.append(record)


@pytest.fixture(scope="module")
def captured() -> Iterator[Records]:
    handler = Records()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="module")
def lis(api: Api, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hl7Processor]:
    """Hospital A's adapter (HL7 → FHIR, with PID-3 rules for every national-identifier type) and its outbox."""
    tmp = tmp_path_factory.mktemp("adapter")
    rules = [{"type": "MR", "system": "mrn"}] + [
        {"type": PID3_TYPE[t], "system": "national" if t == RESIDENT_ID else s} for s, t in SYSTEMS.items()
    ]
    config = hosp_a_config(tmp, identifiers={"pid3": rules})
    catalog = load_catalog()
    assert config.codes.map_file is not None
    box = Outbox(config.outbox.path)
    yield Hl7Processor(config, Coder(catalog, "hosp-a", read_code_map(config.codes.map_file, catalog)), box)
    box.close()


# ---------------------------------------------------------------------------------------------------- channels
def _get(api: Api, target: str, who: str = "admin") -> None:
    r = api.client.get(target, headers=api.headers(who, Prefer="handling=lenient"))
    assert r.status_code < 500, (target, r.text)
    access_record("GET", target, r.status_code)


def _post(api: Api, target: str, body: str | bytes, who: str, **headers: str) -> Any:
    r = api.client.post(target, content=body, headers=api.headers(who, **headers))
    assert r.status_code < 500, (target, r.text)
    access_record("POST", target, r.status_code)
    return r


def _patient_text(case: Case, mrn: str, spelled: str, narrative: str) -> str:
    family, given = case.name
    return (
        '{"resourceType": "Patient", "identifier": ['
        f'{{"system": "http://hosp-a.example/mrn", "value": "{mrn}"}}, '
        f'{{"system": "{case.system}", "value": "{spelled}"}}], '
        f'"name": [{{"family": "{family}", "given": ["{given}"]}}], '
        '"text": {"status": "generated", "div": "<div xmlns=\\"http://www.w3.org/1999/xhtml\\">'
        f'{family}{given} {narrative}</div>"}}, '
        f'"extension": [{{"url": "http://hosp-a.example/ext/id-card", "valueString": "{narrative}"}}], '
        '"managingOrganization": {"reference": "Organization/hosp-a"}}'
    )


def _hl7(case: Case, mrn: str, number: str) -> bytes:
    family, given = case.name
    pid = f"PID|1||{mrn}^^^HOSPA^MR~{case.spellings[7].strip()}^^^CHN^{PID3_TYPE[case.id_type]}||{family}^{given}"
    text = CBC.replace("PID|1||A-123^^^HOSPA^MR~110105198503120020^^^CHN^NNCHN||王^小明", pid)
    return text.replace("A0001", number[-10:]).replace("R-2025-0001", number).replace("PL-7001", f"P{number}").encode()


def send_everything(api: Api, lis: Hl7Processor, case: Case) -> None:
    j, q = case.json, case.query
    mrn = unique("A")
    # writes: a Patient (identifier and narrative JSON-escaped), a transaction whose report names the patient
    created = _post(api, "/fhir/Patient", _patient_text(case, mrn, j[0], j[1]), "hosp-a-system")
    assert created.status_code == 201, created.text
    patient_id = created.json()["id"]
    report = {
        "resourceType": "DiagnosticReport", "status": "final",
        "identifier": [{"system": "http://hosp-a.example/report", "value": unique("R")}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
        "subject": {"reference": f"Patient/{patient_id}", "identifier": {"system": case.system, "value": "@ID@"}},
        "effectiveDateTime": "2025-03-01T08:00:00+08:00", "performer": [{"reference": "Organization/hosp-a"}],
        "conclusion": "@ID@",
    }  # fmt: skip
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"resource": report, "request": {"method": "POST", "url": "DiagnosticReport"}}]}  # fmt: skip
    r = _post(api, "/fhir", orjson.dumps(bundle).decode().replace("@ID@", j[2]), "hosp-a-system")
    assert r.status_code == 200, r.text
    # searches: the token percent-encoded in every parameter that takes one, a bare value, an unknown name
    _get(api, f"/fhir/Patient?identifier={q[3]}")
    _get(api, f"/fhir/DiagnosticReport?patient.identifier={q[4]}&_count=5")
    _get(api, f"/fhir/Observation?subject:Patient.identifier={q[5]}")
    _get(api, f"/fhir/Patient?identifier:not=http://x%7C1,{q[6]}")
    _get(api, f"/fhir/Patient?identifier={case.bare}")
    _get(api, f"/fhir/Patient?_id={q[3]}")
    _get(api, f"/fhir/Patient?{case.unknown_parameter}={q[4]}")
    _get(api, f"/fhir/Patient/$ihe-pix?sourceIdentifier={q[5]}", who="hosp-b-system")
    if case.id_type == RESIDENT_ID:  # as a resource id (a bare passport number is any id: see README)
        _get(api, f"/fhir/Patient/{case.bare}")
    family, given = case.name
    _get(api, f"/fhir/Patient?family={quote(family)}&given={quote(given)}&name:contains={quote(family + given)}")
    form = f"identifier={q[6]}&_count=3"
    _post(api, "/fhir/Patient/_search", form, "admin", **{"Content-Type": "application/x-www-form-urlencoded"})
    # CDS Hooks prefetch and $recognition-check, JSON-escaped
    prefetch = (
        '{"hook": "patient-view", "hookInstance": "' + str(uuid.uuid4()) + '", '
        '"context": {"patientId": "unknown", "userId": "Practitioner/dr-b"}, '
        '"prefetch": {"patient": {"resourceType": "Patient", "identifier": '
        f'[{{"system": "{case.system}", "value": "{j[3]}"}}]}}}}}}'
    )
    _post(api, "/cds-services/hr-patient-view", prefetch, "dr-b")
    check = (
        '{"resourceType": "Parameters", "parameter": ['
        f'{{"name": "patientIdentifier", "valueIdentifier": {{"system": "{case.system}", "value": "{j[4]}"}}}}, '
        '{"name": "order", "resource": {"resourceType": "ServiceRequest", "id": "o1", "status": "draft", '
        '"intent": "order", "subject": {"reference": "Patient/x"}, '
        '"code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]}}}]}'
    )
    _post(api, "/fhir/ServiceRequest/$recognition-check", check, "dr-b")
    # an HL7 ORU^R01 through hospital A's adapter, delivered as the adapter would
    result = lis.handle(_hl7(case, unique("M"), uuid.uuid4().hex[:16].upper()), "property")
    assert result.code == "AA", result.text
    for message in lis.outbox.ready(10, set()):
        delivered = _post(api, "/fhir", message.body, "hosp-a-system")
        assert delivered.status_code == 200, delivered.text
        lis.outbox.delivered(message.id)


# ---------------------------------------------------------------------------------------------------- the property
@settings(
    max_examples=int(os.environ.get("HR_PRIVACY_EXAMPLES", "30")),
    deadline=None,
    database=None,
    phases=(Phase.explicit, Phase.generate),  # no shrinking: an example is a dozen requests; the case is reported
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=cases())
def test_no_national_identifier_in_any_spelling_is_left_in_clear(
    api: Api, lis: Hl7Processor, captured: Records, case: Case
) -> None:
    assert dict(api.ctx.identity.systems) == SYSTEMS
    start = len(captured.records)
    send_everything(api, lis, case)
    secrets = [case.value, *case.spellings]
    assert leaks(database_text(api.ctx.engine), secrets) == [], "database"
    events = api.get("/fhir/AuditEvent", params={"_count": "100"}).json().get("entry", [])
    assert leaks(audit_text(e["resource"] for e in events), secrets) == [], "audit trail"
    written = log_text(captured.records[start:])
    assert "HTTP/1.1" in written
    assert leaks(written, [*secrets, "".join(case.name)]) == [], written


def test_the_property_can_fail(api: Api, captured: Records) -> None:
    """The checks are not vacuous: a number written where nothing masks it (a log line of the test's own) is found."""
    start = len(captured.records)
    logging.getLogger("tests.privacy").warning("P%s", "G1234567")
    assert leaks(log_text(captured.records[start:]), ["g1234567"]) == ["g1234567"]
    assert leaks(database_text(api.ctx.engine), ["hosp-a"]) == ["hosp-a"]
