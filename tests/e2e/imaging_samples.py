"""Studies for the DICOMweb gateway's tests, made from pydicom's bundled sample files (offline, exact names:
``CT_small.dcm`` 128×128, ``MR_small.dcm`` 64×64; ``emri_small.dcm`` is not in the wheel, so a multi-frame instance is
built here from ``MR_small.dcm``'s pixels) with fresh UIDs, uploaded to a real Orthanc, and the FHIR Endpoint and
ImagingStudy a hospital would push for them."""

from __future__ import annotations

from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.e2e.orthanc import Orthanc

DCM = "http://dicom.nema.org/resources/ontology/DCM"
CONNECTION = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"


def dataset(name: str) -> Dataset:
    path = get_testdata_file(name)
    if path is None:  # pragma: no cover - the files ship inside the pydicom wheel
        raise FileNotFoundError(name)
    return dcmread(path)


def multiframe(source: Dataset, frames: int) -> Dataset:
    """``source`` (one uncompressed frame) as an instance of ``frames`` frames — frame *n* its rows rolled by *n*
    eighths of the height, so every frame is a different image — with NumberOfFrames (0028,0008) (PS3.3 C.7.6.6)."""
    ds = source.copy()
    pixels = bytes(source.PixelData)
    row = int(source.Columns) * int(source.SamplesPerPixel) * int(source.BitsAllocated) // 8
    step = max(1, int(source.Rows) // 8) * row
    rolled = [pixels[n * step :] + pixels[: n * step] for n in range(frames)]
    ds.NumberOfFrames = frames
    ds.PixelData = b"".join(rolled)
    return ds


def cropped(source: Dataset, rows: int) -> Dataset:
    """``source`` (one 16-bit frame) cut to its first ``rows`` rows: an image wider than it is high."""
    ds = source.copy()
    ds.PixelData = bytes(source.PixelData)[: rows * int(source.Columns) * 2]
    ds.Rows = rows
    return ds


def encoded(ds: Dataset) -> bytes:
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@dataclass
class Instance:
    series: str
    sop: str
    rows: int
    columns: int
    frames: int
    data: bytes


@dataclass
class Study:
    uid: str
    patient_id: str
    instances: list[Instance] = field(default_factory=list)

    @property
    def series(self) -> list[str]:
        return list(dict.fromkeys(i.series for i in self.instances))

    def path(self, instance: Instance) -> str:
        return f"studies/{self.uid}/series/{instance.series}/instances/{instance.sop}"


def make_study(
    orthanc: Orthanc, patient_id: str, *, ct: int = 1, mr_frames: int = 0, extra_series: int = 0, wide: bool = False
) -> Study:
    """A study of ``ct`` CT instances in one series (plus ``extra_series`` more series of one CT instance each),
    with ``mr_frames`` one multi-frame MR instance in a series of its own, and with ``wide`` a series of one CT
    instance of 128 columns × 64 rows — all uploaded to ``orthanc``."""
    study = Study(generate_uid(), patient_id)
    ct_series = generate_uid()
    plan: list[tuple[str, Dataset]] = [(ct_series, dataset("CT_small.dcm")) for _ in range(ct)]
    plan += [(generate_uid(), dataset("CT_small.dcm")) for _ in range(extra_series)]
    if mr_frames:
        plan.append((generate_uid(), multiframe(dataset("MR_small.dcm"), mr_frames)))
    if wide:
        plan.append((generate_uid(), cropped(dataset("CT_small.dcm"), 64)))
    for number, (series, ds) in enumerate(plan, start=1):
        ds.PatientID = patient_id
        ds.StudyInstanceUID = study.uid
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = generate_uid()
        ds.InstanceNumber = number
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        data = encoded(ds)
        stored = orthanc.upload(data)
        assert stored["Status"] == "Success", stored
        study.instances.append(
            Instance(series, ds.SOPInstanceUID, int(ds.Rows), int(ds.Columns), int(ds.get("NumberOfFrames", 1)), data)
        )
    return study


def endpoint(endpoint_id: str, org: str, *, status: str = "active") -> dict[str, Any]:
    return {
        "resourceType": "Endpoint",
        "id": endpoint_id,
        "status": status,
        "connectionType": {"system": CONNECTION, "code": "dicom-wado-rs"},
        "name": f"PACS of {org}",
        "managingOrganization": {"reference": f"Organization/{org}"},
        "payloadType": [{"text": "DICOM"}],
        "payloadMimeType": ["application/dicom"],
        "address": f"https://pacs.{org}.example.cn/dicom-web",  # what the hospital says; never fetched as such
    }


def imaging_study(study: Study, patient_id: str, endpoint_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "ImagingStudy",
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{study.uid}"}],
        "status": "available",
        "modality": [{"system": DCM, "code": "CT"}],
        "subject": {"reference": f"Patient/{patient_id}"},
        "endpoint": [{"reference": f"Endpoint/{endpoint_id}"}],
        "numberOfSeries": len(study.series),
        "numberOfInstances": len(study.instances),
        "series": [{"uid": s, "modality": {"system": DCM, "code": "CT"}} for s in study.series],
        **extra,
    }
