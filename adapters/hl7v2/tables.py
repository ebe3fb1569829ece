"""HL7 v2 code tables the mapping needs, and local unit spellings → UCUM (reference/standards-notes.md §4)."""

from __future__ import annotations

import re

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


# ---------------------------------------------------------------------------------------------------- units
_UNITS = {
    "g/l": "g/L",
    "g/dl": "g/dL",
    "mg/l": "mg/L",
    "mg/dl": "mg/dL",
    "ug/l": "ug/L",
    "ug/dl": "ug/dL",
    "ug/ml": "ug/mL",
    "ng/ml": "ng/mL",
    "ng/l": "ng/L",
    "ng/dl": "ng/dL",
    "pg/ml": "pg/mL",
    "mol/l": "mol/L",
    "mmol/l": "mmol/L",
    "umol/l": "umol/L",
    "nmol/l": "nmol/L",
    "pmol/l": "pmol/L",
    "u/l": "U/L",
    "u/ml": "U/mL",
    "ku/l": "k[IU]/L",
    "iu/l": "[IU]/L",
    "iu/ml": "[IU]/mL",
    "miu/l": "m[IU]/L",
    "miu/ml": "m[IU]/mL",
    "uiu/ml": "u[IU]/mL",
    "%": "%",
    "fl": "fL",
    "pg": "pg",
    "10*9/l": "10*9/L",
    "10*12/l": "10*12/L",
    "10*6/l": "10*6/L",
    "10*3/ul": "10*3/uL",
    "10*6/ul": "10*6/uL",
    "mm/h": "mm/h",
    "mm/hr": "mm/h",
    "s": "s",
    "sec": "s",
    "秒": "s",
    "min": "min",
    "/ul": "/uL",
    "cells/ul": "/uL",
    "个/ul": "/uL",
    "/hp": "/[HPF]",
    "/hpf": "/[HPF]",
    "/lp": "/[LPF]",
    "/lpf": "/[LPF]",
    "mmhg": "mm[Hg]",
    "ml/min": "mL/min",
    "ml/min/1.73m2": "mL/min/{1.73_m2}",
    "ml/min/1.73m^2": "mL/min/{1.73_m2}",
    "ratio": "{ratio}",
    "1": "1",
    "coi": "{COI}",
    "s/co": "{s_co_ratio}",
    "au/ml": "[arb'U]/mL",
    "iu": "[IU]",
    "g": "g",
    "kg": "kg",
    "mg": "mg",
    "ml": "mL",
    "l": "L",
    "mosm/kg": "mosm/kg",
    "mosm/kgh2o": "mosm/kg",
}


def ucum(unit: str) -> str | None:
    """The UCUM code of a unit as LIS write it (``×10^9/L``, ``μmol/L``, ``mIU/mL``…), or None when unknown."""
    text = unit.strip()
    if not text:
        return None
    key = text.replace("μ", "u").replace("µ", "u").replace("×", "").replace("x10", "10").replace("X10", "10")
    key = re.sub(r"10\s*(\^|E|e|\*\*)\s*", "10*", key).replace(" ", "").lower()
    return _UNITS.get(key)
