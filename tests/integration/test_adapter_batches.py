"""Batched delivery against the real registry (SQLite and PostgreSQL): a backlog of HL7 messages goes in a few
transaction Bundles; a message the registry refuses is dead-lettered alone with the registry's own OperationOutcome,
one whose study is missing waits alone, and every other message is committed — decimals as the LIS wrote them, a
report's versions in queue order."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import orjson
import pytest

from adapters.codes import Coder, load_catalog, read_code_map
from adapters.push.client import RegistryClient
from adapters.push.delivery import Deliverer
from adapters.push.outbox import Outbox
from tests.integration.conftest import Api
from tests.unit.adapters.conftest import hosp_a_config

HL7 = Path(__file__).resolve().parents[1] / "data" / "adapters" / "hl7"
REPORT_NO = "https://hosp-a.example.cn/fhir/sid/report-no"


def cbc(number: str) -> bytes:
    return (
        (HL7 / "oru_cbc_final.hl7")
        .read_bytes()
        .replace(b"R-2025-0001", number.encode())
        .replace(b"A0001", number.encode()[-5:])
    )


def refused_bundle(number: str) -> bytes:
    """A report the adapter would never write but an older release or a hand-made replay might hold: a status that
    is not in the required value set."""
    report = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": REPORT_NO, "value": number}],
        "status": "finished",
        "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
        "subject": {"reference": "Patient?identifier=https://hosp-a.example.cn/fhir/sid/mrn|A-123"},
    }
    entry = {
        "resource": report,
        "request": {"method": "PUT", "url": f"DiagnosticReport?identifier={REPORT_NO}|{number}"},
    }
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [entry]})


def waiting_bundle(number: str) -> bytes:
    """A report that names its study by a conditional reference, before the study is in the registry."""
    report = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": REPORT_NO, "value": number}],
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "24627-2"}]},
        "subject": {"reference": "Patient?identifier=https://hosp-a.example.cn/fhir/sid/mrn|A-123"},
        "imagingStudy": [{"reference": "ImagingStudy?identifier=urn:dicom:uid|urn:oid:1.2.826.0.1.3680043.8.498.99"}],
    }
    entry = {
        "resource": report,
        "request": {"method": "PUT", "url": f"DiagnosticReport?identifier={REPORT_NO}|{number}"},
    }
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [entry]})


@pytest.fixture
def adapter(api: Api, tmp_path: Path) -> tuple[Outbox, Deliverer, object]:
    from adapters.hl7v2.processor import Hl7Processor

    config = hosp_a_config(tmp_path, registry={"url": "http://testserver"}, outbox={"batch_size": 20, "concurrency": 1})
    catalog = load_catalog()
    assert config.codes.map_file is not None
    box = Outbox(config.outbox.path)
    processor = Hl7Processor(config, Coder(catalog, "hosp-a", read_code_map(config.codes.map_file, catalog)), box)
    client = RegistryClient(config.registry, api.client)
    client.token = lambda *, force=False: api.token_for("hosp-a-system")  # type: ignore[method-assign]
    return box, Deliverer(box, client, config.outbox, rng=random.Random(1)), processor


def test_a_backlog_is_committed_in_batches_and_only_the_bad_messages_are_held_back(
    api: Api, adapter: tuple[Outbox, Deliverer, object]
) -> None:
    box, deliverer, processor = adapter
    numbers = [f"R-BATCH-{api.ctx.engine.dialect.name[:2]}-{n:02d}" for n in range(12)]
    for n, number in enumerate(numbers):
        assert processor.handle(cbc(number), "test").code == "AA"  # type: ignore[attr-defined]
        if n == 4:
            box.enqueue(source="replay", kind="hl7", order_key="bad", summary="bad report", digest="bad",
                        body=refused_bundle(numbers[0] + "-BAD"))  # fmt: skip
        if n == 8:
            box.enqueue(source="ris", kind="hl7", order_key="ct", summary="report before its study", digest="ct",
                        body=waiting_bundle(numbers[0] + "-CT"))  # fmt: skip
    deliverer.run(threading.Event(), until_empty=True)

    st = box.status()
    assert (st.delivered, st.dead, st.pending, st.waiting) == (12, 1, 1, 1)
    assert st.requests == 1  # the 12 good ones in one transaction: each refusal named its entry, set apart at once
    (dead,) = box.dead_letters()
    assert dead.summary == "bad report" and dead.status in (400, 422)
    assert "status" in dead.outcome and "Bundle.entry[0]" in dead.outcome  # the registry's words, for that message
    assert st.last_errors[0][1] == "report before its study"

    for number in numbers:
        r = api.get("/fhir/DiagnosticReport", who="hosp-a-system", params={"identifier": f"{REPORT_NO}|{number}"})
        assert r.status_code == 200 and len(r.json()["entry"]) == 1, (number, r.text)
    r = api.get("/fhir/Observation", who="hosp-a-system",
                params={"identifier": f"https://hosp-a.example.cn/fhir/sid/observation|{numbers[3]}/RBC"})  # fmt: skip
    assert b'"value":4.60' in r.content.replace(b" ", b"")  # 4.60 as the LIS wrote it, through the merge
