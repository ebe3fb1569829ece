"""DICOM headers → the facts the registry needs, per instance, grouped into studies and series.

Files are read with pydicom up to the pixel data (``stop_before_pixels``); images never leave the hospital's PACS.
A file that is not DICOM, is truncated inside its header, or lacks an identifying UID is a ``DicomInputError``.
The same facts come from a C-STORE dataset or a DICOMweb (QIDO-RS) JSON answer, so the three ways in share one mapping.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from adapters.errors import DicomInputError

REQUIRED = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality")


@dataclass(frozen=True, slots=True)
class ProcedureCode:
    code: str
    scheme: str
    meaning: str


@dataclass(frozen=True, slots=True)
class OtherId:
    value: str
    issuer: str
    type: str


@dataclass(frozen=True, slots=True)
class InstanceFacts:
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class: str
    modality: str
    instance_number: int | None = None
    series_number: int | None = None
    series_description: str = ""
    body_part: str = ""
    laterality: str = ""
    series_date: str = ""
    series_time: str = ""
    study_date: str = ""
    study_time: str = ""
    tz_offset: str = ""
    accession: str = ""
    accession_issuer: str = ""
    study_id: str = ""
    study_description: str = ""
    referring: str = ""
    patient_id: str = ""
    patient_id_issuer: str = ""
    other_ids: tuple[OtherId, ...] = ()
    family: str = ""
    given: str = ""
    birth_date: str = ""
    sex: str = ""
    procedure_codes: tuple[ProcedureCode, ...] = ()
    contrast_agent: str = ""

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> InstanceFacts:
        raw = orjson.loads(data)
        raw["other_ids"] = tuple(OtherId(**o) for o in raw.get("other_ids") or [])
        raw["procedure_codes"] = tuple(ProcedureCode(**p) for p in raw.get("procedure_codes") or [])
        return cls(**raw)


@dataclass(slots=True)
class SeriesFacts:
    uid: str
    first: InstanceFacts
    instances: dict[str, InstanceFacts] = field(default_factory=dict)
    count: int | None = None  # NumberOfSeriesRelatedInstances when known without the instances (QIDO-RS)


@dataclass(slots=True)
class StudyFacts:
    uid: str
    first: InstanceFacts
    series: dict[str, SeriesFacts] = field(default_factory=dict)
    series_count: int | None = None
    instance_count: int | None = None

    @property
    def number_of_series(self) -> int:
        return self.series_count if self.series_count is not None else len(self.series)

    @property
    def number_of_instances(self) -> int:
        if self.instance_count is not None:
            return self.instance_count
        return sum(s.count if s.count is not None else len(s.instances) for s in self.series.values())


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, list | tuple) or (hasattr(value, "__iter__") and not isinstance(value, str | bytes)):
        value = value[0] if len(value) else ""
    return str(value).strip()


def _int(ds: Dataset, keyword: str) -> int | None:
    text = _text(ds, keyword)
    try:
        return int(float(text)) if text else None
    except ValueError:
        return None


def _name(ds: Dataset) -> tuple[str, str]:
    """Family and given name; the ideographic group (Chinese characters) when the name has one."""
    value = ds.get("PatientName")
    if value is None:
        return "", ""
    groups = str(value).split("=")
    chosen = groups[1] if len(groups) > 1 and groups[1].strip("^ ") else groups[0]
    parts = chosen.split("^")
    return parts[0].strip(), (parts[1].strip() if len(parts) > 1 else "")


def facts_from_dataset(ds: Dataset, where: str = "dataset") -> InstanceFacts:
    """The facts of one instance; ``DicomInputError`` names a missing identifying attribute or an unreadable header."""
    try:
        missing = [k for k in REQUIRED if not _text(ds, k)]
        if missing:
            raise DicomInputError(f"{where}: required DICOM attribute(s) missing or empty: {', '.join(missing)}")
        other: list[OtherId] = []
        for item in ds.get("OtherPatientIDsSequence") or []:
            qualifiers = item.get("IssuerOfPatientIDQualifiersSequence") or []
            type_code = _text(qualifiers[0], "IdentifierTypeCode") if qualifiers else ""
            if _text(item, "PatientID"):
                other.append(
                    OtherId(
                        _text(item, "PatientID"),
                        _text(item, "IssuerOfPatientID"),
                        type_code or _text(item, "TypeOfPatientID"),
                    )
                )
        procedures = tuple(
            ProcedureCode(_text(i, "CodeValue"), _text(i, "CodingSchemeDesignator"), _text(i, "CodeMeaning"))
            for i in ds.get("ProcedureCodeSequence") or []
            if _text(i, "CodeValue")
        )
        family, given = _name(ds)
        accession_issuer = ""
        for item in ds.get("IssuerOfAccessionNumberSequence") or []:
            accession_issuer = _text(item, "LocalNamespaceEntityID") or _text(item, "UniversalEntityID")
        return InstanceFacts(
            study_uid=_text(ds, "StudyInstanceUID"),
            series_uid=_text(ds, "SeriesInstanceUID"),
            sop_uid=_text(ds, "SOPInstanceUID"),
            sop_class=_text(ds, "SOPClassUID"),
            modality=_text(ds, "Modality").upper(),
            instance_number=_int(ds, "InstanceNumber"),
            series_number=_int(ds, "SeriesNumber"),
            series_description=_text(ds, "SeriesDescription"),
            body_part=_text(ds, "BodyPartExamined").upper(),
            laterality=_text(ds, "Laterality").upper(),
            series_date=_text(ds, "SeriesDate"),
            series_time=_text(ds, "SeriesTime"),
            study_date=_text(ds, "StudyDate"),
            study_time=_text(ds, "StudyTime"),
            tz_offset=_text(ds, "TimezoneOffsetFromUTC"),
            accession=_text(ds, "AccessionNumber"),
            accession_issuer=accession_issuer,
            study_id=_text(ds, "StudyID"),
            study_description=_text(ds, "StudyDescription"),
            referring=str(ds.get("ReferringPhysicianName") or "").split("=")[0].replace("^", " ").strip(),
            patient_id=_text(ds, "PatientID"),
            patient_id_issuer=_text(ds, "IssuerOfPatientID"),
            other_ids=tuple(other),
            family=family,
            given=given,
            birth_date=_text(ds, "PatientBirthDate"),
            sex=_text(ds, "PatientSex").upper(),
            procedure_codes=procedures,
            contrast_agent=_text(ds, "ContrastBolusAgent"),
        )
    except DicomInputError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, EOFError, OSError, struct.error, LookupError) as exc:
        raise DicomInputError(f"{where}: the DICOM header cannot be read ({type(exc).__name__}: {exc})") from None


def read_file(source: Path | IO[bytes], where: str | None = None) -> InstanceFacts:
    """Read one DICOM Part 10 file's header (not its pixels)."""
    label = where or (source.name if isinstance(source, Path) else "stream")
    try:
        ds = dcmread(source, stop_before_pixels=True)
    except InvalidDicomError:
        raise DicomInputError(f"{label}: not a DICOM file (no DICM preamble)") from None
    except (EOFError, struct.error, ValueError, TypeError, KeyError, OverflowError, LookupError) as exc:
        raise DicomInputError(f"{label}: truncated or damaged DICOM header ({type(exc).__name__}: {exc})") from None
    except OSError as exc:
        raise DicomInputError(f"{label}: cannot be read ({exc.strerror or exc})") from None
    return facts_from_dataset(ds, label)


def group(instances: list[InstanceFacts]) -> dict[str, StudyFacts]:
    """Instances grouped by study and series (a repeated SOP instance counts once)."""
    studies: dict[str, StudyFacts] = {}
    for inst in instances:
        study = studies.setdefault(inst.study_uid, StudyFacts(inst.study_uid, inst))
        series = study.series.setdefault(inst.series_uid, SeriesFacts(inst.series_uid, inst))
        series.instances[inst.sop_uid] = inst
    return studies


# ---------------------------------------------------------------------------------------------------- DICOM JSON
def _json_value(attrs: dict[str, Any], tag: str) -> str:
    element = attrs.get(tag) or {}
    values = element.get("Value") or []
    if not values:
        return ""
    first = values[0]
    if isinstance(first, dict):  # PN
        return str(first.get("Ideographic") or first.get("Alphabetic") or "")
    return str(first).strip()


def facts_from_json(*levels: dict[str, Any]) -> InstanceFacts:
    """Facts from DICOM JSON (PS3.18 F.2) attributes: a QIDO-RS instance answer merged with its series' and study's
    (later levels win)."""
    merged: dict[str, Any] = {}
    for attrs in levels:
        merged.update(attrs)
    merged = {tag: element for tag, element in merged.items() if isinstance(element, dict) and "vr" in element}
    try:
        ds = Dataset.from_json(merged)
    except (ValueError, TypeError, KeyError) as exc:
        raise DicomInputError(f"DICOMweb answer is not valid DICOM JSON: {exc}") from None
    if "00080060" not in merged and "00080061" in merged:
        ds.Modality = _json_value(merged, "00080061")
    return facts_from_dataset(ds, "DICOMweb answer")
