"""AA only for a message the registry will take (adapters/hl7v2/registry_rules.py, patient.py): every content check the
registry makes is made before the ACK, each refusal with its exact MSA/ERR; and the flow for a PID without a
national identifier (``hl7.without_national_id``: refuse by default, or a documented wait shown in ``outbox status``).
tests/integration/test_hl7_deliverable.py pushes the same messages to a real registry."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters.cli import app
from adapters.hl7v2.processor import Hl7Processor
from adapters.hl7v2.registry_rules import MAX_BUNDLE_ENTRIES
from catalog import Catalog

from .test_hl7_bad_input import (
    CBC,
    GB18030,
    edit,
    make_processor,
    observations,
    queued_bundles,
    read_ack,
    set_field,
)
from .test_outbox_delivery import FakeRegistry, make, outcome

NID = "110105198503120020"
OBR_2 = "OBR|2|PL-7002|R-2025-0001|CBC^血常规^L|||20251103083000|||||||||||||||20251103100000|||F\r".encode()
OBX_2 = b"OBX|1|NM|MCV^MCV^L||88|fL|82-100|N|||F\r"


def proc(tmp_path: Path, catalog: Catalog, **hl7: object) -> Hl7Processor:
    return make_processor(tmp_path, catalog, hl7=hl7)[0] if hl7 else make_processor(tmp_path, catalog)[0]


def refused(p: Hl7Processor, raw: bytes) -> tuple[str, int | None, str, str]:
    result = p.handle(raw, "test")
    ack = read_ack(result.ack)
    assert p.outbox.pending_count() == 0, "a refused message leaves nothing in the outbox"
    return ack.code, ack.error_code, ack.location, str(ack.message.segment("MSA")[3])


REFUSED = [
    # id, message, MSA-1, HL7 0357, ERR location, the start of MSA-3 (the fix first)
    ("same-obr-3-twice", CBC + OBR_2 + OBX_2, "AE", 205, "OBR^2^3", "OBR-3 (segment 2): give each OBR its own"),
    (
        "same-mrn-two-people",
        CBC
        + b"PID|2||A-123^^^HOSPA^MR~110105198503120020^^^CHN^NNCHN||Li^Hong||19620715|F\r"
        + OBR_2.replace(b"R-2025-0001", b"R-2025-0002")
        + OBX_2,
        "AE",
        205,
        "PID^2^3",
        "PID-3 (segment 2): send one person's data once per MRN",
    ),
    ("resident-id-check-digit", edit(CBC, NID, "110105198503120021"), "AE", 102, "PID^1^3", "PID-3: send the national"),
    ("resident-id-17-digits", edit(CBC, NID, "11010519850312002"), "AE", 102, "PID^1^3", "PID-3: send the national"),
    ("mrn-is-the-national-id", edit(CBC, "A-123^^^HOSPA^MR", f"{NID}^^^HOSPA^MR"), "AE", 102, "PID^1^3", "PID-3: send"),
    ("mrn-only", set_field(CBC, "PID", 3, "A-123^^^HOSPA^MR"), "AE", 101, "PID^1^3", "PID-3: send the resident ID"),
    ("study-uid-not-a-uid", b"", "AE", 102, "OBX^3^5", "OBX-5 (segment 3): send the Study Instance UID"),
    ("range-low-above-high", set_field(CBC, "OBX", 7, "9.5-3.5"), "AE", 102, "OBX^1^7", "OBX-7: reference range"),
    ("nul-in-a-value", set_field(CBC, "OBX", 5, "a\x00b", occurrence=1), "AE", 102, "OBX^1^5", "OBX-5: the value"),
    ("nul-in-a-note", edit(CBC, "复查确认", "复查\x00确认"), "AE", 102, "OBX^3", "OBX (segment 3): send printable"),
    ("too-many-digits", set_field(CBC, "OBX", 5, "1" * 19), "AE", 102, "OBX^1^5", "OBX-5: '1111111111111111111' has"),
]


@pytest.mark.parametrize(
    ("raw", "code", "error_code", "location", "msa_3"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_what_the_registry_would_refuse_is_refused_before_the_ack(
    tmp_path: Path, catalog: Catalog, raw: bytes, code: str, error_code: int, location: str, msa_3: str
) -> None:
    if not raw:  # the imaging sample with an OBX DCM 113014 that is no UID
        sample = (Path(__file__).parents[2] / "data/adapters/hl7/oru_imaging_report.hl7").read_bytes()
        raw = sample.replace(b"1.2.826.0.1.3680043.8.498.1", b"1.2.840.abc")
    got = refused(proc(tmp_path, catalog), raw)
    assert got[:3] == (code, error_code, location), got
    assert got[3].startswith(msa_3), got[3]


def test_a_fhir_code_with_white_space_is_caught_by_the_r4_models(tmp_path: Path, catalog: Catalog) -> None:
    """The last guard: the registry's own R4B validation, here under the lenient policy (which lets an unmapped local
    code through) for a code no FHIR ``code`` may be."""
    p = proc(tmp_path, catalog, policy="lenient")
    got = refused(p, edit(CBC, "OBX|1|NM|WBC^", "OBX|1|NM|W  BC^"))
    assert got[:3] == ("AE", 102, "OBX^1^3"), got
    assert "validates every resource as FHIR R4" in p.handle(edit(CBC, "OBX|1|NM|WBC^", "OBX|1|NM|W  BC^"), "t").text


def test_more_results_than_a_registry_transaction_takes_are_refused(tmp_path: Path, catalog: Catalog) -> None:
    lines = [f"OBX|{n}|NM|WBC^白细胞计数^L|{n}|6.2|10*9/L|3.5-9.5|N|||F" for n in range(1, MAX_BUNDLE_ENTRIES + 1)]
    head = CBC.split(b"\rOBX|1|")[0].decode()
    raw = ("\r".join([head, *lines]) + "\r").encode()
    p = proc(tmp_path, catalog, max_message_bytes=10_000_000)
    got = refused(p, raw)
    assert got[:3] == ("AE", 207, f"OBX^{MAX_BUNDLE_ENTRIES}"), got
    assert p.handle(("\r".join([head, *lines[:-2]]) + "\r").encode(), "t").code == "AA"  # 1 + 998 + 1 entries


def test_a_second_national_identifier_is_left_out_with_a_warning(tmp_path: Path, catalog: Catalog) -> None:
    p, box = make_processor(
        tmp_path,
        catalog,
        identifiers={"pid3": [{"type": "MR", "system": "mrn"}, {"type": "NNCHN", "system": "national"},
                              {"type": "PPN", "system": "https://hr-registry.org.cn/fhir/sid/passport"}]},
    )  # fmt: skip
    result = p.handle(edit(CBC, "^^^CHN^NNCHN", "^^^CHN^NNCHN~G12345678^^^CHN^PPN"), "test")
    assert result.code == "AA", result.text
    assert any("second national identifier" in w for w in result.warnings), result.warnings
    [patient] = [e["resource"] for e in queued_bundles(box)[0]["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert [i["value"] for i in patient["identifier"]] == ["A-123", NID]


# ---------------------------------------------------------------------------------------------------- without an NID
def test_without_a_national_id_the_lis_hears_ae_by_default(tmp_path: Path, catalog: Catalog) -> None:
    ack = proc(tmp_path, catalog).handle(GB18030, "test").ack.decode("gb18030")
    assert "MSA|AE|A0007|PID-3: send the resident ID number in PID-3 (type NNCHN) — PID-3 carries no" in ack
    assert "ERR|PID^1^3^101&PID-3: send the resident ID number in PID-3 (type NNCHN)" in ack  # v2.3 ERR-1


def test_the_wait_shows_in_outbox_status_with_the_mrn(tmp_path: Path, catalog: Catalog) -> None:
    p, box = make_processor(tmp_path, catalog, hl7={"without_national_id": "wait"})
    result = p.handle(GB18030, "test")
    assert result.code == "AA", result.text
    [bundle] = queued_bundles(box)
    assert observations(bundle)[0]["subject"] == {
        "reference": "Patient?identifier=https://hosp-a.example.cn/fhir/sid/mrn|A-456"
    }
    box.close()
    registry = FakeRegistry(
        [(412, outcome("not-found", "DiagnosticReport.subject: conditional reference Patient?… matched 0 resources"))]
    )
    outbox, deliverer = make(tmp_path, registry, clock=time.time)
    deliverer.run(threading.Event(), until_empty=True)
    assert outbox.status().waiting == 1
    outbox.close()
    shown = CliRunner().invoke(app, ["outbox", "status", "-c", str(p.config.source or write_config(tmp_path, p))])
    assert shown.exit_code == 0, shown.output
    assert "waiting for a patient/study 1" in shown.output
    assert "no national ID in PID-3: waits until the registry knows MRN A-456" in shown.output
    assert "HTTP 412" in shown.output


def write_config(tmp_path: Path, p: Hl7Processor) -> Path:
    path = tmp_path / "adapter.yaml"
    path.write_text(
        "registry: {url: 'http://registry.test', client_id: c, client_secret: s}\n"
        "hospital: {organization: hosp-a}\n"
        "identifiers: {base: 'https://hosp-a.example.cn/fhir/sid'}\n"
        f"outbox: {{path: '{p.config.outbox.path}'}}\n",
        encoding="utf-8",
    )
    return path
