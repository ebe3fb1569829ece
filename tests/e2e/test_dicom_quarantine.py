"""End to end, as a modality meets the adapter: dcmtk's ``storescu`` sends JPEG-compressed images to ``hr-adapter run``
(a separate process) — one study with an empty PatientID. The good study reaches the live registry; the other is
answered Success, held in the quarantine with its reason (``quarantine list``, ``outbox status``), and after
``quarantine replay --set PatientID=…`` the running adapter delivers it too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from pydicom import dcmread

from tests.conftest import free_port
from tests.e2e.support import (
    STUDY_AT,
    STUDY_DATE,
    AdapterProcess,
    RegistryProcess,
    ack_code,
    adapter_config,
    hr_adapter,
    mllp_send,
    study_dated,
    wait_until,
)
from tests.unit.adapters.dicom_samples import dcmtk, storescu, tool, write_sample  # noqa: F401 - dcmtk: the fixture

pytestmark = pytest.mark.usefixtures("dcmtk")
HL7 = Path(__file__).resolve().parents[1] / "data" / "adapters" / "hl7"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    reg = RegistryProcess(tmp_path / "registry")
    reg.setup_region()
    reg.start()
    yield reg
    reg.close()


def studies_in_registry(registry: RegistryProcess, uid: str) -> int:
    r = registry.get("/fhir/ImagingStudy", "hosp-a-adapter", identifier=f"urn:dicom:uid|urn:oid:{uid}")
    assert r.status_code == 200, r.text
    return len(r.json().get("entry", []))


def test_a_compressed_study_without_patient_id_is_held_then_replayed_into_the_registry(
    registry: RegistryProcess, tmp_path: Path
) -> None:
    mllp, cstore = free_port(), free_port()
    config = adapter_config(tmp_path / "adapter", registry, mllp_port=mllp, cstore_port=cstore)
    adapter = AdapterProcess(registry, config, tmp_path / "adapter.log")
    adapter.start(wait_for_port=cstore)
    try:
        cbc = (HL7 / "oru_cbc_final.hl7").read_bytes().replace(b"20251103", STUDY_DATE.encode())
        assert ack_code(mllp_send(mllp, cbc)) == "AA"  # the LIS registers the patient (MRN A-123)
        images = tmp_path / "images"
        ct_plain = write_sample(images / "plain", "CT_small.dcm", PatientID="", **study_dated(STUDY_AT))
        mr_plain = write_sample(images / "plain", "MR_small.dcm", PatientID="A-123", **study_dated(STUDY_AT))
        ct, mr = images / "ct-jpeg-lossless.dcm", images / "mr-jpeg-baseline.dcm"
        tool("dcmcjpeg", str(ct_plain), str(ct))
        tool("dcmcjpeg", "+eb", str(mr_plain), str(mr))
        for path, option in ((ct, "-xs"), (mr, "-xy")):
            sent = storescu(cstore, path, option)
            assert sent.returncode == 0, sent.stderr
        ct_uid = str(dcmread(ct, stop_before_pixels=True).StudyInstanceUID)
        mr_uid = str(dcmread(mr, stop_before_pixels=True).StudyInstanceUID)

        wait_until(lambda: studies_in_registry(registry, mr_uid) == 1, 60, "the MR study in the registry")

        def held() -> list[dict[str, object]]:
            listed = hr_adapter(registry, "quarantine", "list", "--json", "-c", str(config))
            assert listed.returncode == 0, listed.stderr
            return list(orjson.loads(listed.stdout))

        wait_until(lambda: len(held()) == 1, 30, "the CT study in the quarantine")
        (entry,) = held()
        assert (entry["study_uid"], entry["source"], entry["reason"]) == (
            ct_uid,
            "cstore",
            "PatientID (0010,0020) is empty",
        )
        status = orjson.loads(hr_adapter(registry, "outbox", "status", "--json", "-c", str(config)).stdout)
        assert status["quarantined_studies"] == 1 and status["dead"] == 0
        assert studies_in_registry(registry, ct_uid) == 0
        log = (tmp_path / "adapter.log").read_text(encoding="utf-8")
        assert log.count(f"study {ct_uid} held in the quarantine: PatientID (0010,0020) is empty") == 1

        replayed = hr_adapter(registry, "quarantine", "replay", ct_uid, "--set", "PatientID=A-123", "-c", str(config))
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        assert "1 queued" in replayed.stdout
        wait_until(lambda: studies_in_registry(registry, ct_uid) == 1, 60, "the replayed CT study in the registry")
        assert held() == []
        status = orjson.loads(hr_adapter(registry, "outbox", "status", "--json", "-c", str(config)).stdout)
        assert (status["pending"], status["dead"], status["quarantined_studies"]) == (0, 0, 0)
    finally:
        adapter.stop()
