"""DICOM headers → the facts the registry needs, per instance, grouped into studies and series.

Files are read with pydicom up to the pixel data (``stop_before_pixels``); images never leave the hospital's PACS.
A file that is not DICOM, is truncated (inside its header, or before the end its Pixel Data element declares), or
lacks an identifying UID is a ``DicomInputError``. The same facts come from a C-STORE dataset or a DICOMweb (QIDO-RS)
JSON answer, so the three ways in share one mapping.

Dates and times are checked with pydicom's own value types (PS3.5 §6.2: DA, TM; ``pydicom.valuerep``), so a date that
is not on the calendar (``20250230``) never reaches the registry: the value is left out and the instance carries a
warning naming the attribute, which the intake logs and prints. The rest of the study is kept — a study date is
descriptive, the identifiers are what matters (README "DICOM").
"""

from __future__ import annotations

import re
import struct
import zlib
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.valuerep import DA, TM

from adapters.dicom import elements
from adapters.dicom.prefix import read_header
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
    warnings: tuple[str, ...] = ()  # values left out because they are not valid DICOM (no patient data in them)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: bytes) -> InstanceFacts:
        raw = orjson.loads(data)
        raw["other_ids"] = tuple(OtherId(**o) for o in raw.get("other_ids") or [])
        raw["procedure_codes"] = tuple(ProcedureCode(**p) for p in raw.get("procedure_codes") or [])
        raw["warnings"] = tuple(raw.get("warnings") or ())
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


def _int(ds: Dataset, keyword: str) -> int | None:
    text = elements.plain_text(ds, keyword)
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


_TAGS = {
    "StudyDate": "0008,0020",
    "SeriesDate": "0008,0021",
    "StudyTime": "0008,0030",
    "SeriesTime": "0008,0031",
    "PatientBirthDate": "0010,0030",
    "TimezoneOffsetFromUTC": "0008,0201",
}
_OFFSET = re.compile(r"^[+-](\d{2})(\d{2})$")


def checked_date(text: str) -> tuple[str, str | None]:
    """A DA value as YYYYMMDD, or "" and why not (PS3.5 §6.2 DA; the ACR-NEMA form YYYY.MM.DD is read too)."""
    if not text:
        return "", None
    try:
        return DA(text).strftime("%Y%m%d"), None
    except ValueError as exc:
        return "", str(exc)


def checked_time(text: str) -> tuple[str, str | None]:
    """A TM value (HH, HHMM, HHMMSS, HHMMSS.F…; the retired HH:MM:SS too), or "" and why not (PS3.5 §6.2 TM)."""
    if not text:
        return "", None
    plain = text.replace(":", "")
    try:
        TM(plain)
    except ValueError:
        return "", "not a time of day"
    return plain, None


def _checked(ds: Dataset, keyword: str, warnings: list[str]) -> str:
    text = elements.plain_text(ds, keyword)
    if keyword == "TimezoneOffsetFromUTC":
        m = _OFFSET.match(text)
        ok = not text or (m is not None and int(m.group(1)) <= 14 and int(m.group(2)) < 60)
        value, why = (text, None) if ok else ("", "not a UTC offset ±HHMM")
    elif keyword.endswith("Time"):
        value, why = checked_time(text)
    else:
        value, why = checked_date(text)
    if why is not None:
        shown = "" if keyword == "PatientBirthDate" else f" {text!r}"  # a birth date is the patient's: not repeated
        warnings.append(f"{keyword} ({_TAGS[keyword]}){shown} is not a valid DICOM value ({why}): left out")
    return value


def facts_from_dataset(ds: Dataset, where: str = "dataset") -> InstanceFacts:
    """The facts of one instance; ``DicomInputError`` names a missing identifying attribute or an unreadable header."""
    read = elements.plain_text
    try:
        required = {k: read(ds, k) for k in REQUIRED}
        missing = [k for k, v in required.items() if not v]
        if missing:
            raise DicomInputError(f"{where}: required DICOM attribute(s) missing or empty: {', '.join(missing)}")
        other: list[OtherId] = []
        for item in ds.get("OtherPatientIDsSequence") or []:
            qualifiers = item.get("IssuerOfPatientIDQualifiersSequence") or []
            type_code = read(qualifiers[0], "IdentifierTypeCode") if qualifiers else ""
            if read(item, "PatientID"):
                other.append(
                    OtherId(
                        read(item, "PatientID"),
                        read(item, "IssuerOfPatientID"),
                        type_code or read(item, "TypeOfPatientID"),
                    )
                )
        procedures = tuple(
            ProcedureCode(read(i, "CodeValue"), read(i, "CodingSchemeDesignator"), read(i, "CodeMeaning"))
            for i in ds.get("ProcedureCodeSequence") or []
            if read(i, "CodeValue")
        )
        family, given = _name(ds)
        warnings: list[str] = []
        dated = {k: _checked(ds, k, warnings) for k in _TAGS}
        accession_issuer = ""
        for item in ds.get("IssuerOfAccessionNumberSequence") or []:
            accession_issuer = read(item, "LocalNamespaceEntityID") or read(item, "UniversalEntityID")
        return InstanceFacts(
            study_uid=required["StudyInstanceUID"],
            series_uid=required["SeriesInstanceUID"],
            sop_uid=required["SOPInstanceUID"],
            sop_class=required["SOPClassUID"],
            modality=required["Modality"].upper(),
            instance_number=_int(ds, "InstanceNumber"),
            series_number=_int(ds, "SeriesNumber"),
            series_description=read(ds, "SeriesDescription"),
            body_part=read(ds, "BodyPartExamined").upper(),
            laterality=read(ds, "Laterality").upper(),
            series_date=dated["SeriesDate"],
            series_time=dated["SeriesTime"],
            study_date=dated["StudyDate"],
            study_time=dated["StudyTime"],
            tz_offset=dated["TimezoneOffsetFromUTC"],
            accession=read(ds, "AccessionNumber"),
            accession_issuer=accession_issuer,
            study_id=read(ds, "StudyID"),
            study_description=read(ds, "StudyDescription"),
            referring=str(ds.get("ReferringPhysicianName") or "").split("=")[0].replace("^", " ").strip(),
            patient_id=read(ds, "PatientID"),
            patient_id_issuer=read(ds, "IssuerOfPatientID"),
            other_ids=tuple(other),
            family=family,
            given=given,
            birth_date=dated["PatientBirthDate"],
            sex=read(ds, "PatientSex").upper(),
            procedure_codes=procedures,
            contrast_agent=read(ds, "ContrastBolusAgent"),
            warnings=tuple(warnings),
        )
    except DicomInputError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, EOFError, OSError, struct.error, LookupError) as exc:
        raise DicomInputError(f"{where}: the DICOM header cannot be read ({type(exc).__name__}: {exc})") from None


HEADER_KEYWORDS = (
    *REQUIRED,
    *_TAGS,
    "OtherPatientIDsSequence",
    "ProcedureCodeSequence",
    "IssuerOfAccessionNumberSequence",
    "PatientName",
    "InstanceNumber",
    "SeriesNumber",
    "SeriesDescription",
    "BodyPartExamined",
    "Laterality",
    "AccessionNumber",
    "StudyID",
    "StudyDescription",
    "ReferringPhysicianName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientSex",
    "ContrastBolusAgent",
)
"""The top-level attributes ``facts_from_dataset`` reads (a sequence is read whole, its items' attributes with it)."""
_HEADER_TAGS: list[int] | None = [t for t in map(tag_for_keyword, HEADER_KEYWORDS) if t is not None]


def read_file(source: Path | IO[bytes], where: str | None = None) -> InstanceFacts:
    """Read one DICOM Part 10 file's header (not its pixels), and check that the file holds the whole Pixel Data
    element it declares: a file cut short in transit is refused, not sent as a valid instance."""
    label = where or (source.name if isinstance(source, Path) else "stream")
    try:
        with ExitStack() as stack:
            fp = stack.enter_context(source.open("rb")) if isinstance(source, Path) else source
            # only the attributes read (the rest are skipped, not decoded); the reader still walks every element's
            # header up to the Pixel Data — in memory (adapters.dicom.prefix) — where the pixel check takes over
            ds, problem = read_header(fp, _HEADER_TAGS)
    except InvalidDicomError:
        raise DicomInputError(f"{label}: not a DICOM file (no DICM preamble)") from None
    except (EOFError, struct.error, ValueError, TypeError, KeyError, OverflowError, LookupError, zlib.error) as exc:
        raise DicomInputError(f"{label}: truncated or damaged DICOM header ({type(exc).__name__}: {exc})") from None
    except OSError as exc:
        raise DicomInputError(f"{label}: cannot be read ({exc.strerror or exc})") from None
    if problem:
        raise DicomInputError(f"{label}: truncated DICOM file: {problem}")
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
