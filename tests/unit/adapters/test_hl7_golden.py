"""Golden tests: hand-written synthetic ORU^R01 messages → exactly the FHIR transaction Bundle in the ``.json`` next
to each (reviewed by hand: every field traced to its HL7 source in the HL7 v2-to-FHIR ORU^R01 mapping). Every resource
in the output also validates against the FHIR R4 (R4B) models.

Regenerate a golden file only after reviewing the difference:
``.venv/bin/hr-adapter hl7 convert -c <config> tests/data/adapters/hl7/<name>.hl7``.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

from adapters.codes import Coder
from adapters.config import AdapterConfig, NationalIdPolicy
from adapters.fhir import dumps
from adapters.hl7v2.mapping import OruMapper
from adapters.hl7v2.message import parse

from .conftest import DATA, hosp_a_config

MESSAGES = sorted((DATA / "hl7").glob("*.hl7"))
WAIT = NationalIdPolicy.WAIT


def text(path: Path, config: AdapterConfig, coder: Coder) -> str:
    if b"NNCHN" not in path.read_bytes():  # a PID without a national identifier: for the patient the HIS registered
        config = config.model_copy(update={"hl7": config.hl7.model_copy(update={"without_national_id": WAIT})})
    message = parse(path.read_bytes(), default_encoding=config.hl7.encoding)
    return dumps(OruMapper(config, coder).map(message).bundle, indent=True).decode() + "\n"


def convert(path: Path, config: AdapterConfig, coder: Coder) -> dict:
    return dict(orjson.loads(text(path, config, coder)))


@pytest.mark.parametrize("path", MESSAGES, ids=[p.stem for p in MESSAGES])
def test_message_becomes_the_golden_bundle(path: Path, config: AdapterConfig, coder: Coder) -> None:
    """Compared as text, so a decimal's precision (``4.60``) is part of what is checked."""
    assert text(path, config, coder) == path.with_suffix(".json").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", MESSAGES, ids=[p.stem for p in MESSAGES])
def test_every_resource_is_valid_r4(path: Path, config: AdapterConfig, coder: Coder) -> None:
    bundle = convert(path, config, coder)
    get_fhir_model_class("Bundle").model_validate(bundle)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_golden_files_cover_each_value_type_and_status() -> None:
    """The sample set is what the issue asks for: every OBX value type, corrections and cancellations."""
    text = b"".join(p.read_bytes() for p in MESSAGES).decode("utf-8", "replace")
    for value_type in ("|NM|", "|SN|", "|ST|", "|CWE|", "|TX|", "|DT|", "|TM|"):
        assert value_type in text
    assert "|||C\r" in text  # OBR-25 correction
    assert "|||X\r" in text  # cancelled
    assert "|||W\r" in text  # posted in error (withdrawal)


def test_a_passport_holder_is_sent_as_a_patient(tmp_path: Path, coder: Coder) -> None:
    """PID-3 with a passport (any of the registry's national-identifier systems, docs/design.md §4) keys the patient
    just like a resident ID card: the Bundle carries the Patient instead of waiting for one registered by MRN."""
    passport = "https://hr-registry.org.cn/fhir/sid/passport"
    config = hosp_a_config(tmp_path, identifiers={"pid3": [{"type": "MR", "system": "mrn"},
                                                           {"type": "PPN", "system": passport}]})  # fmt: skip
    raw = (
        (DATA / "hl7" / "oru_cbc_final.hl7")
        .read_bytes()
        .replace(b"110105198503120020^^^CHN^NNCHN", b"G1234567^^^CHN^PPN")
    )
    bundle = OruMapper(config, coder).map(parse(raw)).bundle
    [patient] = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert {"system": passport, "value": "G1234567"}.items() <= patient["identifier"][1].items()
