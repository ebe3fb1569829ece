"""DICOMweb pull from a real PACS: Orthanc holds pydicom's CT and MR samples (with accession numbers and body
parts), ``hr-adapter dicom pull`` queries it with QIDO-RS and the studies reach the registry, where the recognition
check finds them; a second pull sends nothing new, and a changed study is sent again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from tests.conftest import free_port
from tests.e2e.orthanc import Orthanc, orthanc  # noqa: F401 - the fixture
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
)
from tests.unit.adapters.dicom_samples import sample_bytes

ITEMS = "https://hr-registry.org.cn/fhir/CodeSystem/recognized-items"
YESTERDAY = STUDY_DATE
STUDY = study_dated(STUDY_AT)
HL7 = Path(__file__).resolve().parents[1] / "data" / "adapters" / "hl7"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryProcess]:
    reg = RegistryProcess(tmp_path / "registry")
    reg.setup_region()
    reg.start()
    yield reg
    reg.close()


def test_pull_from_orthanc_reaches_the_registry_and_the_check(
    orthanc: Orthanc,  # noqa: F811
    registry: RegistryProcess,
    tmp_path: Path,
) -> None:
    # the patient is registered by the hospital's LIS first (an ORU with the national ID)

    mllp = free_port()
    config = adapter_config(tmp_path / "adapter", registry, mllp_port=mllp, qido_rs=orthanc.dicom_web)
    lis = AdapterProcess(registry, config, tmp_path / "adapter.log")
    lis.start(wait_for_port=mllp)
    try:
        message = (HL7 / "oru_cbc_final.hl7").read_bytes().replace(b"20251103", YESTERDAY.encode())
        assert ack_code(mllp_send(mllp, message)) == "AA"
    finally:
        lis.stop()

    ct_uid, mr_uid = generate_uid(), generate_uid()
    for name, uid in (("CT_small.dcm", ct_uid), ("MR_small.dcm", mr_uid)):
        stored = orthanc.upload(sample_bytes(name, PatientID="A-123", StudyInstanceUID=uid, **STUDY))
        assert stored["Status"] == "Success"

    pulled = hr_adapter(registry, "dicom", "pull", "--since", YESTERDAY, "-c", str(config))
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    assert "2 queued" in pulled.stdout
    drained = hr_adapter(registry, "outbox", "drain", "-c", str(config))
    assert drained.returncode == 0, drained.stdout + drained.stderr

    for uid, modality in ((ct_uid, "CT"), (mr_uid, "MR")):
        r = registry.get("/fhir/ImagingStudy", "hosp-a-adapter", identifier=f"urn:dicom:uid|urn:oid:{uid}")
        (entry,) = r.json()["entry"]
        study = entry["resource"]
        assert study["modality"] == [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": modality}]
        assert study["numberOfInstances"] == 1
        assert study["series"][0]["instance"][0]["sopClass"]["code"].startswith("urn:oid:1.2.840.10008.5.1.4.1.1.")
        assert study["endpoint"]

    ct, mr = recognition_check(registry, NATIONAL_ID, [(ITEMS, "I033"), (ITEMS, "I101")])
    assert ct["status"]["valueCode"] == "recognizable"
    assert mr["status"]["valueCode"] == "recognizable"

    again = hr_adapter(registry, "dicom", "pull", "--since", YESTERDAY, "-c", str(config))
    assert again.returncode == 0 and "0 queued, 2 unchanged" in again.stdout, again.stdout

    # one more instance in the CT study: the study is sent again, updated
    orthanc.upload(
        sample_bytes(
            "CT_small.dcm",
            PatientID="A-123",
            StudyInstanceUID=ct_uid,
            SOPInstanceUID=generate_uid(),
            InstanceNumber=2,
            **STUDY,
        )
    )
    third = hr_adapter(registry, "dicom", "pull", "--since", YESTERDAY, "-c", str(config))
    assert "1 queued, 1 unchanged" in third.stdout, third.stdout
    assert hr_adapter(registry, "outbox", "drain", "-c", str(config)).returncode == 0
    r = registry.get("/fhir/ImagingStudy", "hosp-a-adapter", identifier=f"urn:dicom:uid|urn:oid:{ct_uid}")
    assert r.json()["entry"][0]["resource"]["numberOfInstances"] == 2


def test_an_unreachable_pacs_is_a_clear_error(registry: RegistryProcess, tmp_path: Path) -> None:
    config = adapter_config(tmp_path / "adapter", registry, qido_rs=f"http://127.0.0.1:{free_port()}/dicom-web")
    result = hr_adapter(registry, "dicom", "pull", "--since", YESTERDAY, "-c", str(config))
    assert result.returncode == 1
    assert "cannot be queried" in result.stderr
