"""The demo region's images: DICOM instances for every ImagingStudy the demo holds, made from pydicom's bundled sample
files (offline, exact names) and carrying the study's own Study / Series Instance UIDs, so a local PACS
(:mod:`.local_pacs`) holds exactly what the demo's ImagingStudies name.

Which sample each modality shows (pydicom ships no radiograph and no abdominal ultrasound):

- **CT** ``CT_small.dcm`` (128×128, Hounsfield units through its rescale): one axial slice, so a series of 8–16 slices
  is made of it magnified a little more on each slice (1× to 1.5×, bilinear) — scrolling shows a changing picture,
  the CT window presets act on real CT numbers. Default window 40/400 (soft tissue).
- **MR** ``MR_small.dcm`` (64×64), the same way.
- **US** ``examples_ybr_color.dcm``: a real 30-frame ultrasound cine (JPEG), one multi-frame instance per series.
- **DX** ``JPEG-lossy.dcm``: a planar whole-body image (a nuclear-medicine bone scan, 256×1024) standing in for the
  chest radiograph, one instance per series.

Every series says so in its SeriesDescription. Patient facts are the demo patient's at that hospital (MRN, name, sex,
birth date) — never the national identifier.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from io import BytesIO
from typing import Any

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from catalog.body_parts import TERM_OF_SNOMED

STACKS = frozenset({"CT", "MR"})
"""Modalities whose series are stacks of slices; the others are one instance per series."""
SLICES = 16
"""The most slices a demo stack has (and the distinct pictures it is drawn from)."""
SAMPLES = {
    "CT": ("CT_small.dcm", "CT_small.dcm, its slice magnified"),
    "MR": ("MR_small.dcm", "MR_small.dcm, its slice magnified"),
    "US": ("examples_ybr_color.dcm", "examples_ybr_color.dcm (US cine)"),
    "DX": ("JPEG-lossy.dcm", "JPEG-lossy.dcm (NM, for a radiograph)"),
}
_DROPPED = ("OtherPatientIDsSequence", "OtherPatientIDs", "PatientAge", "PatientWeight", "PatientSize",
            "AdditionalPatientHistory", "ImageComments", "NameOfPhysiciansReadingStudy", "OperatorsName",
            "InstanceCreatorUID", "StationName")  # fmt: skip
_KEPT_GROUPS = frozenset({0x0008, 0x0010, 0x0018, 0x0020, 0x0028, 0x0054, 0x7FE0})
"""SOP common, study / series / patient, acquisition, image pixel, NM detector, the pixels."""


def series_size(modality: str, drawn: int) -> int:
    """How many instances a demo series has: a stack of 8–16 slices for CT and MR (picked by the number the demo drew
    for it), else one instance (the ultrasound's holds 30 frames)."""
    return 8 + drawn % (SLICES - 7) if modality in STACKS else 1


@dataclass(frozen=True, slots=True)
class DemoSeries:
    uid: str
    number: int
    modality: str
    instances: int
    body_part: str


@dataclass(frozen=True, slots=True)
class DemoStudy:
    """One demo ImagingStudy, as a PACS holds it."""

    uid: str
    org: str
    institution: str
    accession: str
    patient_id: str  # the hospital's MRN
    patient_name: str  # DICOM PN, family^given
    sex: str  # M / F
    birth: str  # YYYYMMDD
    started: datetime
    description: str
    series: tuple[DemoSeries, ...]

    @property
    def instances(self) -> int:
        return sum(s.instances for s in self.series)


def demo_study(resource: dict[str, Any], org: str, institution: str, mrn: str, name: tuple[str, str],
               male: bool, birth: datetime) -> DemoStudy:  # fmt: skip
    """The PACS's view of a demo ImagingStudy resource (``registry.services.demo.records``)."""
    ids = resource["identifier"]
    uid = next(str(i["value"]).removeprefix("urn:oid:") for i in ids if i["system"] == "urn:dicom:uid")
    accession = next(str(i["value"]) for i in ids if i["system"].endswith("/accession"))
    series = tuple(
        DemoSeries(s["uid"], int(s["number"]), s["modality"]["code"], int(s["numberOfInstances"]), _body_part(s))
        for s in resource["series"]
    )
    return DemoStudy(uid, org, institution, accession, mrn, f"{name[0]}^{name[1]}", "M" if male else "F",
                     f"{birth:%Y%m%d}", datetime.fromisoformat(resource["started"]), str(resource["description"]),
                     series)  # fmt: skip


def _body_part(series: dict[str, Any]) -> str:
    """The DICOM Body Part Examined term of the series' SNOMED CT body site (PS3.16 Table L-1)."""
    return TERM_OF_SNOMED.get(str((series.get("bodySite") or {}).get("code") or ""), "")


@cache
def _sample(name: str) -> bytes:
    path = get_testdata_file(name)
    if path is None:  # pragma: no cover - the files ship inside the pydicom wheel
        raise FileNotFoundError(f"pydicom's sample {name} is not installed")
    with open(path, "rb") as fh:
        return fh.read()


@cache
def _template(name: str) -> bytes:
    """The sample without its private and vendor elements and its patient facts: what every instance starts from
    (about a third of the elements, so writing 1,500 instances takes seconds, not tens of seconds)."""
    ds = dcmread(BytesIO(_sample(name)))
    ds.remove_private_tags()
    for element in list(ds):
        if element.tag.group not in _KEPT_GROUPS or element.keyword in _DROPPED:
            del ds[element.tag]
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _zoom(pixels: bytes, rows: int, cols: int, factor: float, typecode: str) -> bytes:
    """One frame of 16-bit pixels magnified ``factor`` (≥ 1) about its centre, bilinearly."""
    src = array(typecode, pixels)
    out = array(typecode, bytes(len(pixels)))
    cy, cx = (rows - 1) / 2, (cols - 1) / 2
    columns = []
    for x in range(cols):
        fx = cx + (x - cx) / factor
        x0 = min(int(fx), cols - 2)
        columns.append((x0, fx - x0))
    for y in range(rows):
        fy = cy + (y - cy) / factor
        y0 = min(int(fy), rows - 2)
        wy, r0, to = fy - y0, y0 * cols, y * cols
        r1 = r0 + cols
        for x, (x0, wx) in enumerate(columns):
            top = src[r0 + x0] + (src[r0 + x0 + 1] - src[r0 + x0]) * wx
            bottom = src[r1 + x0] + (src[r1 + x0 + 1] - src[r1 + x0]) * wx
            out[to + x] = round(top + (bottom - top) * wy)
    return out.tobytes()


@cache
def _slice(name: str, index: int) -> bytes:
    """Picture ``index`` (0…SLICES-1) of a stack made from the sample's one slice: magnified 1× to 1.5×."""
    ds = dcmread(BytesIO(_sample(name)))
    factor = 1.5 ** (index / (SLICES - 1))
    typecode = "h" if int(ds.PixelRepresentation) else "H"
    return _zoom(bytes(ds.PixelData), int(ds.Rows), int(ds.Columns), factor, typecode)


def _series(study: DemoStudy, series: DemoSeries) -> tuple[Dataset, str]:
    """The series' elements on its sample (its instances then differ only in their number, UID and pixels)."""
    name, source = SAMPLES.get(series.modality, SAMPLES["CT"])
    ds = dcmread(BytesIO(_template(name)))
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: the patients' and hospitals' names are Chinese
    ds.PatientName, ds.PatientID, ds.PatientSex, ds.PatientBirthDate = (
        study.patient_name, study.patient_id, study.sex, study.birth
    )  # fmt: skip
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study.uid, series.uid
    ds.FrameOfReferenceUID = f"{series.uid}.0"
    day, time = f"{study.started:%Y%m%d}", f"{study.started:%H%M%S}"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = day
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = time
    ds.AccessionNumber, ds.StudyID = study.accession, study.accession[-16:]
    ds.StudyDescription, ds.InstitutionName = study.description, study.institution
    ds.ReferringPhysicianName = ""
    ds.TimezoneOffsetFromUTC = "+0800"  # the demo region's times are Beijing's
    ds.Modality, ds.BodyPartExamined = series.modality, series.body_part
    ds.SeriesNumber = series.number
    ds.SeriesDescription = f"Demo: pydicom {source}"  # LO: at most 64 characters
    if series.modality == "CT":
        ds.WindowCenter, ds.WindowWidth = 40, 400  # soft tissue; the viewer's presets change it
    return ds, name


def _number(ds: Dataset, name: str, series: DemoSeries, number: int, start: list[float]) -> None:
    """Make ``ds`` instance ``number`` of the series: its UID, number and — in a stack — its slice and position."""
    ds.SOPInstanceUID = f"{series.uid}.{number}"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = number
    if series.modality in STACKS:
        ds.PixelData = _slice(name, round((number - 1) * (SLICES - 1) / max(1, series.instances - 1)))
        z = round(start[2] + (number - 1) * float(ds.get("SliceThickness") or 5), 3)
        ds.ImagePositionPatient, ds.SliceLocation = [*start[:2], z], z


def instances(study: DemoStudy) -> Iterator[tuple[str, bytes]]:
    """(SOP Instance UID, the DICOM file) of every instance of the study, series by series."""
    for series in study.series:
        ds, name = _series(study, series)
        start = [float(v) for v in ds.get("ImagePositionPatient") or (0, 0, 0)]
        for number in range(1, series.instances + 1):
            _number(ds, name, series, number, start)
            buffer = BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            yield str(ds.SOPInstanceUID), buffer.getvalue()
