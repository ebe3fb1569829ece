"""DICOMweb pull from a real PACS: Orthanc holds pydicom's CT and MR samples (with accession numbers and body
parts), ``hr-adapter dicom pull`` queries it with QIDO-RS and the studies reach the registry, where the recognition
check finds them; a second pull sends nothing new, and a changed study is sent again. A pull without ``--since``
lists every study of the PACS without a date filter — a study without a StudyDate included — as many as Orthanc's
own ``/statistics`` counts, and says what it covered."""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from adapters.cli import app
from adapters.push.outbox import Outbox
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
from tests.unit.adapters.conftest import hosp_a_settings
from tests.unit.adapters.dicom_samples import sample, sample_bytes

ITEMS = "https://hr-registry.org.cn/fhir/CodeSystem/recognized-items"
YESTERDAY = STUDY_DATE
STUDY = study_dated(STUDY_AT)
HL7 = Path(__file__).resolve().parents[1] / "data" / "adapters" / "hl7"


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


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


def _undated(name: str, **changes: object) -> bytes:
    ds = sample(name, **changes)
    for keyword in ("StudyDate", "StudyTime", "SeriesDate", "SeriesTime", "AcquisitionDate", "ContentDate"):
        if keyword in ds:
            delattr(ds, keyword)
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_a_pull_finds_every_study_of_the_pacs_even_without_a_study_date(
    orthanc: Orthanc,  # noqa: F811
    tmp_path: Path,
) -> None:
    undated, dated = generate_uid(), generate_uid()
    assert orthanc.upload(_undated("CT_small.dcm", PatientID="A-200", StudyInstanceUID=undated))["Status"] == "Success"
    stored = orthanc.upload(
        sample_bytes("MR_small.dcm", PatientID="A-201", StudyInstanceUID=dated, StudyDate="20200102")
    )
    assert stored["Status"] == "Success"
    # the premise: a date query does not match the study without a StudyDate
    r = httpx.get(f"{orthanc.dicom_web}/studies", params={"StudyDate": "19000101-"}, timeout=30)
    by_date = {s["0020000D"]["Value"][0] for s in r.json()}
    assert dated in by_date and undated not in by_date
    count = int(httpx.get(f"{orthanc.base}/statistics", timeout=30).json()["CountStudies"])

    settings = hosp_a_settings(tmp_path, dicom={"pull": {"qido_rs": orthanc.dicom_web, "page_size": 1}})
    config = tmp_path / "hosp-a.yaml"
    config.write_text(yaml.safe_dump(settings), encoding="utf-8")
    code, out = cli("dicom", "pull", "-c", str(config))
    assert code == 0, out
    assert "covered: first pull: every study the PACS lists, whatever its date (no date filter)" in out
    assert f"the PACS listed {count} study(ies), {count} new or changed fetched" in out  # = Orthanc's /statistics
    assert f"{count} queued, 0 unchanged" in out
    outbox = Outbox(tmp_path / "outbox.sqlite")
    try:
        studies = {m.order_key: orjson.loads(m.body)["entry"][-1]["resource"] for m in outbox.ready(10 * count, set())}
    finally:
        outbox.close()
    assert len(studies) == count
    found = studies[f"urn:dicom:uid|urn:oid:{undated}"]
    assert "started" not in found and found["modality"][0]["code"] == "CT"
    assert studies[f"urn:dicom:uid|urn:oid:{dated}"]["started"].startswith("2020-01-02")

    code, out = cli("dicom", "pull", "-c", str(config))
    assert code == 0, out
    assert f"only those new or changed since the last pull are fetched ({count} known)" in out
    assert f"the PACS listed {count} study(ies), 0 new or changed fetched" in out
    assert f"0 queued, {count} unchanged" in out

    # one more instance in the study without a date: found as changed, sent again
    orthanc.upload(_undated("CT_small.dcm", PatientID="A-200", StudyInstanceUID=undated, SOPInstanceUID=generate_uid()))
    code, out = cli("dicom", "pull", "-c", str(config))
    assert code == 0, out
    assert f"the PACS listed {count} study(ies), 1 new or changed fetched" in out and "1 queued" in out

    # --since narrows to StudyDate, and says what it leaves out
    code, out = cli("dicom", "pull", "-c", str(config), "--since", "2000-01-01")
    assert code == 0, out
    assert "a date query never matches a study without a StudyDate: run without --since" in out
    assert f"the PACS listed {count - 1} study(ies)" in out
