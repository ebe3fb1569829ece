"""HL7 v2 code tables the mapping needs (HL7 v2.5.1 tables 0001, 0074, 0078, 0085, 0123, 0396)."""

from __future__ import annotations

REPORT_STATUS = {  # OBR-25 (HL7 0123) → DiagnosticReport.status
    "F": "final",
    "C": "corrected",
    "A": "partial",
    "P": "preliminary",
    "R": "preliminary",  # results stored, not yet verified
    "S": "registered",  # procedure scheduled, not done
    "I": "registered",  # no results available; specimen received
    "O": "registered",  # order received; specimen not yet received
    "X": "cancelled",  # no results available; order cancelled
}

OBSERVATION_STATUS = {  # OBX-11 (HL7 0085) → Observation.status
    "F": "final",
    "C": "corrected",
    "U": "final",  # changed to final without retransmitting results
    "P": "preliminary",
    "R": "preliminary",  # results entered, not verified
    "S": "preliminary",  # partial results
    "I": "registered",  # specimen in lab, results pending
    "O": "registered",  # order detail description only
    "W": "entered-in-error",  # post original as wrong, e.g. transmitted for wrong patient
    "D": "entered-in-error",  # deletes the OBX record
    "X": "cancelled",  # results cannot be obtained for this observation
    "N": "cancelled",  # not asked
}

INTERPRETATIONS = {  # OBX-8 (HL7 0078) → v3-ObservationInterpretation codes
    "L": "L",
    "H": "H",
    "LL": "LL",
    "HH": "HH",
    "<": "<",
    ">": ">",
    "N": "N",
    "A": "A",
    "AA": "AA",
    "U": "U",
    "D": "D",
    "B": "B",
    "W": "W",
    "S": "S",
    "R": "R",
    "I": "I",
    "MS": "MS",
    "VS": "VS",
    "NEG": "NEG",
    "POS": "POS",
    "IND": "IND",
    "ND": "ND",
    "DET": "DET",
    "E": "E",
    "EX": "EX",
    "HX": "HX",
    "LX": "LX",
}

GENDER = {
    "M": "male",
    "F": "female",
    "O": "other",
    "A": "other",
    "U": "unknown",
    "N": "unknown",
    # what Chinese LIS send: GB/T 2261.1 codes (0 unknown, 1 male, 2 female, 9 not stated) and the characters
    "0": "unknown",
    "1": "male",
    "2": "female",
    "9": "unknown",
    "男": "male",
    "女": "female",
}
"""PID-8 / DICOM PatientSex (HL7 0001) → FHIR AdministrativeGender."""

IMAGING_SECTIONS = frozenset(
    {"RAD", "CT", "MR", "NMR", "US", "CUS", "OUS", "VUS", "RUS", "NMS", "RX", "XRC", "CTH", "VR", "OSL", "IMG"}
)
"""OBR-24 diagnostic service sections (HL7 0074) that mean an imaging report."""

STUDY_UID_CODES = frozenset({"113014", "STUDYINSTANCEUID", "STUDY_INSTANCE_UID"})
"""OBX-3 codes that carry the DICOM Study Instance UID in an imaging report (DCM 113014 'Study Instance UID')."""

CODING_SYSTEMS = {
    "LN": "http://loinc.org",
    "LOINC": "http://loinc.org",
    "SCT": "http://snomed.info/sct",
    "SNM": "http://snomed.info/sct",
    "SNOMED": "http://snomed.info/sct",
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
    "UCUM": "http://unitsofmeasure.org",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "HL70078": "http://terminology.hl7.org/CodeSystem/v2-0078",
}
"""CE/CWE component 3 (HL7 0396) → FHIR system; ``L``, ``99…`` and empty mean the hospital's local system."""


def is_local_system(name: str) -> bool:
    n = name.strip().upper()
    return n in ("", "L", "LOCAL", "99LOCAL") or n.startswith("99")
