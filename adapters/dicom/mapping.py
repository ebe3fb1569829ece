"""A study's DICOM facts → a transaction Bundle with the ImagingStudy (R4 imagingstudy-mappings, DICOM PS3.3
C.7.2.1/C.7.3.1/C.12.1), the hospital's WADO-RS Endpoint, and the Patient when the headers carry a national identifier.

The ImagingStudy is written with a conditional update on its Study Instance UID (``urn:dicom:uid`` /
``urn:oid:<uid>``), so a study sent again — more instances arrived, or a pull of an unchanged study — replaces it in
place and an identical one changes nothing. The catalog item comes from the procedure code (through the local code
map) or else from (modality, body part examined, contrast); studies that map to no item are reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from adapters.codes import Coder
from adapters.config import NATIONAL_ID_SYSTEMS, AdapterConfig
from adapters.dicom.headers import InstanceFacts, StudyFacts
from adapters.errors import DicomInputError
from adapters.fhir import DCM, DICOM_UID, SNOMED, V2_0203, hr_tag, merge_codings, put_entry, transaction
from adapters.hl7v2 import tables
from catalog import Coding, Contrast, Item
from catalog.codes import BODY_PART_SNOMED
from catalog.model import contrast_from_text

ENDPOINT_TYPE = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
CONTRAST_MODALITIES = frozenset({"CT", "MR"})


@dataclass(slots=True)
class MappedStudy:
    bundle: dict[str, Any]
    order_key: str
    summary: str
    item: Item | None
    unmapped: list[tuple[str, str, str, str]] = field(default_factory=list)  # system, code, display, where


def _dicom_datetime(date: str, time: str, offset: str, tz_default: str) -> str | None:
    """DA + TM (+ TimezoneOffsetFromUTC) as a FHIR dateTime; the date alone when there is no time."""
    date = date.strip()
    if len(date) != 8 or not date.isdigit():
        return None
    out = f"{date[:4]}-{date[4:6]}-{date[6:8]}"
    time = time.strip().replace(":", "")
    if not time:
        return out
    whole, _, fraction = time.partition(".")
    hh, mm, ss = whole[:2], whole[2:4] or "00", whole[4:6] or "00"
    if not (hh + mm + ss).isdigit():
        return out
    tz = tz_default
    if len(offset) == 5 and offset[0] in "+-" and offset[1:].isdigit():
        tz = f"{offset[:3]}:{offset[3:]}"
    return f"{out}T{hh}:{mm}:{ss}{'.' + fraction if fraction else ''}{tz}"


def _contrast(study: StudyFacts) -> Contrast | None:
    modality = study.first.modality
    agents = [bool(s.first.contrast_agent) for s in study.series.values()]
    described = contrast_from_text(study.first.study_description)
    if described is not None:
        return described
    if modality not in CONTRAST_MODALITIES or not agents:
        return None
    if all(agents):
        return Contrast.WITH
    if any(agents):
        return Contrast.WITHOUT_THEN_WITH
    return Contrast.WITHOUT


class StudyMapper:
    def __init__(self, config: AdapterConfig, coder: Coder) -> None:
        self.config = config
        self.coder = coder
        self.org = config.hospital.organization
        self.tz = config.hospital.timezone
        ids = config.identifiers
        self.accession_system = ids.system("accession")
        self.endpoint_system = ids.system("endpoint")
        self.hr_mark = config.dicom.hr_mark

    def _patient(self, first: InstanceFacts) -> tuple[dict[str, Any], dict[str, Any] | None]:
        if not first.patient_id:
            raise DicomInputError(f"study {first.study_uid}: PatientID (0010,0020) is empty")
        ids = self.config.identifiers
        identifiers: list[dict[str, Any]] = [
            {"type": {"coding": [{"system": V2_0203, "code": "MR"}]}, "system": ids.mrn, "value": first.patient_id}
        ]
        national = False
        for other in first.other_ids:
            system = None
            for rule in ids.pid3:
                if rule.type is not None and rule.type.upper() != other.type.upper():
                    continue
                if rule.authority is not None and rule.authority != other.issuer:
                    continue
                system = ids.system(rule.system)
                break
            if system is None or system == ids.mrn:
                continue
            ident: dict[str, Any] = {}
            if other.type:
                ident["type"] = {"coding": [{"system": V2_0203, "code": other.type}]}
            identifiers.append(ident | {"system": system, "value": other.value})
            national = national or system in NATIONAL_ID_SYSTEMS or system == ids.system("national")
        if not national:
            return {"reference": f"Patient?identifier={ids.mrn}|{first.patient_id}"}, None
        patient: dict[str, Any] = {"resourceType": "Patient", "identifier": identifiers}
        name = {k: v for k, v in (("family", first.family), ("given", [first.given] if first.given else None)) if v}
        if name:
            patient["name"] = [name]
        if first.sex in tables.GENDER:
            patient["gender"] = tables.GENDER[first.sex]
        if len(first.birth_date) == 8 and first.birth_date.isdigit():
            patient["birthDate"] = f"{first.birth_date[:4]}-{first.birth_date[4:6]}-{first.birth_date[6:8]}"
        patient["managingOrganization"] = {"reference": f"Organization/{self.org}"}
        entry = put_entry(patient, ids.mrn, first.patient_id)
        return {"reference": entry["fullUrl"]}, entry

    def _procedure(
        self, study: StudyFacts
    ) -> tuple[list[dict[str, Any]], Item | None, list[tuple[str, str, str, str]]]:
        first = study.first
        codings: list[dict[str, str]] = []
        for p in first.procedure_codes:
            system = (
                self.config.local_code_system
                if tables.is_local_system(p.scheme)
                else tables.CODING_SYSTEMS.get(p.scheme.upper(), f"{self.config.identifiers.base}/cs/{p.scheme}")
            )
            coding = {"system": system, "code": p.code}
            if p.meaning:
                coding["display"] = p.meaning
            codings.append(coding)
        item = self.coder.item_for([Coding(c["system"], c["code"]) for c in codings])
        if item is None:
            parts = {s.first.body_part for s in study.series.values() if s.first.body_part}
            contrast = _contrast(study)
            found = {
                i.id: i
                for part in parts
                if (i := self.coder.catalog.by_imaging(first.modality, part, contrast)) is not None
            }
            item = next(iter(found.values())) if len(found) == 1 else None
        unmapped: list[tuple[str, str, str, str]] = []
        if item is None:
            if codings:
                c = codings[0]
                unmapped.append((c["system"], c["code"], c.get("display", ""), "ProcedureCodeSequence"))
            else:
                parts_text = ",".join(sorted({s.first.body_part or "?" for s in study.series.values()}))
                unmapped.append(
                    (DCM, f"{first.modality}/{parts_text}", first.study_description, "Modality+BodyPartExamined")
                )
        concepts: list[dict[str, Any]] = []
        if codings or item is not None:
            all_codings = merge_codings(codings, self.coder.item_codings(item) if item else [])
            concept: dict[str, Any] = {"coding": all_codings}
            text = (first.procedure_codes[0].meaning if first.procedure_codes else "") or (item.name_zh if item else "")
            if text:
                concept["text"] = text
            concepts.append(concept)
        return concepts, item, unmapped

    def map(self, study: StudyFacts) -> MappedStudy:
        first = study.first
        entries: list[dict[str, Any]] = []
        subject, patient_entry = self._patient(first)
        if patient_entry is not None:
            entries.append(patient_entry)
        endpoint_ref = None
        if self.config.dicom.wado_rs:
            endpoint = {
                "resourceType": "Endpoint",
                "identifier": [{"system": self.endpoint_system, "value": "wado-rs"}],
                "status": "active",
                "connectionType": {"system": ENDPOINT_TYPE, "code": "dicom-wado-rs"},
                "name": f"WADO-RS of Organization/{self.org}",
                "managingOrganization": {"reference": f"Organization/{self.org}"},
                "payloadType": [{"text": "DICOM"}],
                "payloadMimeType": ["application/dicom"],
                "address": self.config.dicom.wado_rs,
            }
            entry = put_entry(endpoint, self.endpoint_system, "wado-rs")
            entries.append(entry)
            endpoint_ref = {"reference": entry["fullUrl"]}
        procedure, item, unmapped = self._procedure(study)
        uid_value = f"urn:oid:{study.uid}"
        imaging: dict[str, Any] = {"resourceType": "ImagingStudy"}
        if self.hr_mark and item is not None:
            imaging["meta"] = hr_tag(self.hr_mark)
        identifiers: list[dict[str, Any]] = [{"system": DICOM_UID, "value": uid_value}]
        if first.accession:
            identifiers.append(
                {
                    "use": "usual",
                    "type": {"coding": [{"system": V2_0203, "code": "ACSN"}]},
                    "system": self.accession_system,
                    "value": first.accession,
                    "assigner": {"reference": f"Organization/{self.org}"},
                }
            )
        modalities: list[str] = []
        for s in study.series.values():
            if s.first.modality and s.first.modality not in modalities:
                modalities.append(s.first.modality)
        imaging |= {
            "identifier": identifiers,
            "status": "available",
            "modality": [{"system": DCM, "code": m} for m in modalities],
            "subject": subject,
        }
        started = _dicom_datetime(first.study_date, first.study_time, first.tz_offset, self.tz)
        if started:
            imaging["started"] = started
        if first.referring:
            imaging["referrer"] = {"display": first.referring}
        if endpoint_ref:
            imaging["endpoint"] = [endpoint_ref]
        imaging["numberOfSeries"] = study.number_of_series
        imaging["numberOfInstances"] = study.number_of_instances
        if procedure:
            imaging["procedureCode"] = procedure
        if first.study_description:
            imaging["description"] = first.study_description
        imaging["series"] = [self._series(s) for s in sorted(study.series.values(), key=_series_order)]
        entries.append(put_entry(imaging, DICOM_UID, uid_value))
        summary = (
            f"study {study.uid}: {first.modality} {study.number_of_series} series / "
            f"{study.number_of_instances} instances → {item.id if item else 'no catalog item'}"
        )
        return MappedStudy(transaction(entries), f"{DICOM_UID}|{uid_value}", summary, item, unmapped)

    def _series(self, s: Any) -> dict[str, Any]:
        first: InstanceFacts = s.first
        out: dict[str, Any] = {"uid": s.uid}
        if first.series_number is not None:
            out["number"] = first.series_number
        out["modality"] = {"system": DCM, "code": first.modality}
        if first.series_description:
            out["description"] = first.series_description
        out["numberOfInstances"] = s.count if s.count is not None else len(s.instances)
        if first.body_part:
            site: dict[str, str] = {"display": first.body_part}  # a term PS3.16 Table L-1 does not list: as text
            if first.body_part in BODY_PART_SNOMED:
                code, meaning = BODY_PART_SNOMED[first.body_part]
                site = {"system": SNOMED, "code": code, "display": meaning}
            out["bodySite"] = site
        if first.laterality in ("L", "R"):
            out["laterality"] = {
                "system": SNOMED,
                "code": "7771000" if first.laterality == "L" else "24028007",
                "display": "Left" if first.laterality == "L" else "Right",
            }
        started = _dicom_datetime(first.series_date, first.series_time, first.tz_offset, self.tz)
        if started:
            out["started"] = started
        instances = sorted(
            s.instances.values(), key=lambda i: (i.instance_number is None, i.instance_number or 0, i.sop_uid)
        )
        if instances:
            out["instance"] = []
            for inst in instances:
                entry: dict[str, Any] = {
                    "uid": inst.sop_uid,
                    "sopClass": {"system": "urn:ietf:rfc:3986", "code": f"urn:oid:{inst.sop_class}"},
                }
                if inst.instance_number is not None:
                    entry["number"] = inst.instance_number
                out["instance"].append(entry)
        return out


def _series_order(s: Any) -> tuple[bool, int, str]:
    n = s.first.series_number
    return (n is None, n or 0, s.uid)
