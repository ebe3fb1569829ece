"""End to end, as a hospital would run it: ``hr-adapter run`` (a separate process) takes HL7 v2 over MLLP and DICOM
over C-STORE and delivers them to a live registry (uvicorn), where the recognition check then finds them. Then the
worst day: the registry goes down mid-stream and the adapter is killed outright; after both restart, every message
is in the registry exactly once, what queued up during the outage delivered in batches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from tests.conftest import free_port
from tests.e2e.support import (
    NATIONAL_ID,
    STUDY_AT,
    STUDY_DATE,
    AdapterProcess,
    RegistryProcess,
    ack_code,
    adapter_config,
    hr_adapter,
    mllp_send,
    recognition_check,
    study_dated,
    wait_until,
)
from tests.unit.adapters.dicom_samples import sample

HL7 = Path(__file__).resolve().parents[1] / "data" / "adapters" / "hl7"
ITEMS = "https://hr-registry.org.cn/fhir/CodeSystem/recognized-items"
YESTERDAY = STUDY_DATE  # the HL7 samples' 08:30–10:15 (+08:00) on that day is always before the run


def dated(name: str, **replace: str) -> bytes:
    """A sample message moved to yesterday (so its results are within their validity today)."""
    text = (HL7 / name).read_bytes().decode("utf-8")
    for old in ("20251103", "20251104", "20251106"):
        text = text.replace(old, YESTERDAY)
    for old, new in replace.items():
        text = text.replace(old, new)
    return text.encode("utf-8")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    reg = RegistryProcess(tmp_path / "registry")
    reg.setup_region()
    reg.start()
    yield reg
    reg.close()


def count_reports(registry: RegistryProcess) -> int:
    r = registry.get("/fhir/DiagnosticReport", "hosp-a-adapter", performer="Organization/hosp-a", _summary="count")
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def test_hl7_over_mllp_and_dicom_over_c_store_reach_the_recognition_check(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    mllp, cstore = free_port(), free_port()
    config = adapter_config(tmp_path / "adapter", registry, mllp_port=mllp, cstore_port=cstore)
    adapter = AdapterProcess(registry, config, tmp_path / "adapter.log")
    adapter.start(wait_for_port=cstore)  # the C-STORE listener starts after the MLLP one
    try:
        ct = sample("CT_small.dcm", PatientID="A-123", **study_dated(STUDY_AT))
        # the RIS report arrives before its images: it waits in the outbox until the study is there
        report = dated("oru_imaging_report.hl7", **{"1.2.826.0.1.3680043.8.498.1": str(ct.StudyInstanceUID)})
        assert ack_code(mllp_send(mllp, dated("oru_cbc_final.hl7"))) == "AA"
        assert ack_code(mllp_send(mllp, report)) == "AA"
        scu = AE(ae_title="CT-SCANNER")
        scu.add_requested_context(CTImageStorage)
        assoc = scu.associate("127.0.0.1", cstore, ae_title="HR-ADAPTER")
        assert assoc.is_established
        status = assoc.send_c_store(ct)
        assoc.release()
        assert status.Status == 0x0000

        def arrived() -> bool:
            r = registry.get(
                "/fhir/ImagingStudy", "hosp-a-adapter", identifier=f"urn:dicom:uid|urn:oid:{ct.StudyInstanceUID}"
            )
            return r.status_code == 200 and r.json().get("total", len(r.json().get("entry", []))) == 1

        wait_until(arrived, 60, "the C-STORE study in the registry")
        wait_until(lambda: count_reports(registry) == 2, 60, "the lab and imaging reports in the registry")

        orders = recognition_check(registry, NATIONAL_ID, [(ITEMS, "L001"), (ITEMS, "I033"), (ITEMS, "L066")])
        cbc, ct_order, glucose = orders
        assert cbc["status"]["valueCode"] == "recognizable"
        assert ct_order["status"]["valueCode"] == "recognizable"
        assert glucose["status"]["valueCode"] != "recognizable"  # no glucose result was sent
        issuer = {p["name"]: p for p in cbc["candidate"]["part"]}["issuer"]["valueReference"]["reference"]
        assert issuer == "Organization/hosp-a"

        # the imaging report is linked to the study that came by C-STORE
        r = registry.get(
            "/fhir/DiagnosticReport",
            "hosp-a-adapter",
            identifier="https://hosp-a.example.cn/fhir/sid/report-no|RPT-CT-0001",
            _include="DiagnosticReport:imaging-study",
        )
        types = sorted(e["resource"]["resourceType"] for e in r.json()["entry"])
        assert types == ["DiagnosticReport", "ImagingStudy"]

        # a correction replaces the report in place (one resource, a new version, the new value)
        assert ack_code(mllp_send(mllp, dated("oru_cbc_corrected.hl7", **{"20251103": YESTERDAY}))) == "AA"

        def corrected() -> bool:
            r = registry.get(
                "/fhir/DiagnosticReport",
                "hosp-a-adapter",
                identifier="https://hosp-a.example.cn/fhir/sid/report-no|R-2025-0001",
            )
            entries = r.json().get("entry", [])
            return len(entries) == 1 and entries[0]["resource"]["status"] == "corrected"

        wait_until(corrected, 60, "the corrected report")
        status_doc = orjson.loads(hr_adapter(registry, "outbox", "status", "--json", "-c", str(config)).stdout)
        assert status_doc["pending"] == 0 and status_doc["dead"] == 0
    finally:
        adapter.stop()


def test_nothing_lost_nothing_duplicated_when_the_registry_dies_and_the_adapter_is_killed(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    mllp = free_port()
    config = adapter_config(tmp_path / "adapter", registry, mllp_port=mllp)
    adapter = AdapterProcess(registry, config, tmp_path / "adapter.log")
    adapter.start(wait_for_port=mllp)
    base = dated("oru_cbc_final.hl7")
    total = 40
    try:
        for n in range(total):
            message = base.replace(b"R-2025-0001", f"R-KILL-{n:03d}".encode()).replace(b"A0001", f"K{n:04d}".encode())
            if n == 10:
                registry.stop()  # the registry goes down mid-stream: the adapter keeps acknowledging
            if n == 25:
                adapter.kill()  # and the adapter is killed outright (SIGKILL, no shutdown)
                adapter.start(wait_for_port=mllp)
            assert ack_code(mllp_send(mllp, message)) == "AA", n
        adapter.kill()
        status = orjson.loads(hr_adapter(registry, "outbox", "status", "--json", "-c", str(config)).stdout)
        assert status["pending"] > 0  # the registry is down: the rest waits in the outbox
        registry.start()
        adapter.start(wait_for_port=mllp)
        wait_until(lambda: count_reports(registry) == total, 120, f"{total} reports in the registry")
        wait_until(
            lambda: (
                orjson.loads(hr_adapter(registry, "outbox", "status", "--json", "-c", str(config)).stdout)["pending"]
                == 0
            ),
            60,
            "an empty outbox",
        )
    finally:
        adapter.stop()
    # what waited during the outage went in batches (several messages per registry transaction)
    status = orjson.loads(hr_adapter(registry, "outbox", "status", "--json", "-c", str(config)).stdout)
    assert status["delivered"] == total and status["delivered_in_requests"] < total - 5, status
    # exactly one of each, each at version 1 (a resend after a lost answer changed nothing)
    r = registry.get("/fhir/DiagnosticReport", "hosp-a-adapter", performer="Organization/hosp-a", _count="100")
    reports = [e["resource"] for e in r.json()["entry"]]
    numbers = sorted(i["value"] for rep in reports for i in rep["identifier"] if i["system"].endswith("/report-no"))
    assert numbers == [f"R-KILL-{n:03d}" for n in range(total)]
    assert {rep["meta"]["versionId"] for rep in reports} == {"1"}
    r = registry.get("/fhir/Observation", "hosp-a-adapter", _summary="count")
    assert r.json()["total"] == total * 5


def test_check_config_tests_the_registry_connection(registry: RegistryProcess, tmp_path: Path) -> None:
    config = adapter_config(tmp_path / "adapter", registry, mllp_port=free_port())
    ok = hr_adapter(registry, "check-config", "-c", str(config))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "client hosp-a-adapter authenticated" in ok.stdout and "knows Organization/hosp-a" in ok.stdout
    registry.secrets["hosp-a-adapter"] = "wrong-secret"
    bad = hr_adapter(registry, "check-config", "-c", str(config))
    assert bad.returncode == 1
    assert "refused the client credentials" in bad.stderr
