"""PID → the FHIR Patient (or the reference to one the registry knows), checked as the registry will check it
(docs/design.md §4: one person keyed on one national identifier; HL7 v2.5.1 §3.4.2 PID-3, -5, -7, -8).

- PID-3 repetitions become identifiers through ``identifiers.pid3``; the MRN is required.
- A national identifier must be one the registry takes: a resident ID number has 17 digits and the GB 11643 check
  character (after folding full-width digits and spaces, as the registry does), a passport or permit at least 5
  letters or digits. The registry keys a person on one national identifier and refuses a Patient carrying two
  different ones, so the first is sent and any further one is left out with a warning.
- The MRN (or any other PID-3 identifier) must not hold the national identifier: the registry would index it in
  clear, so it refuses such a Patient.
- Without a national identifier (``hl7.without_national_id``): ``refuse`` (the default) answers AE naming PID-3,
  so the LIS hears it at once; ``wait`` sends the report for the patient this hospital registered under the MRN
  (by its HIS); the registry answers 412 until it knows the MRN, the outbox retries for
  ``outbox.wait_for_references_hours``, and ``hr-adapter outbox status`` names the MRN it waits for.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from adapters.config import NATIONAL_ID_SYSTEM, NATIONAL_ID_SYSTEMS, AdapterConfig, NationalIdPolicy
from adapters.errors import Hl7Error
from adapters.fhir import V2_0203, hl7_datetime, put_entry, query_escape
from adapters.hl7v2 import tables
from adapters.hl7v2.message import CX, PatientData

_RESIDENT = re.compile(r"^[0-9]{17}[0-9X]$")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"


def normalized_id(value: str) -> str:
    """A national identifier as the registry reads it: NFKC (full-width digits), no white space, upper case."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", value)).upper()


def national_id_problem(system: str, value: str) -> str | None:
    """Why the registry would refuse this national identifier (never naming the value), or None."""
    v = normalized_id(value)
    if system == NATIONAL_ID_SYSTEM:
        if not _RESIDENT.match(v):
            return "the resident ID number is not 17 digits and a check digit or X"
        if _CHECK[sum(int(d) * w for d, w in zip(v[:17], _WEIGHTS, strict=True)) % 11] != v[17]:
            return "the resident ID number fails its GB 11643 check digit"
        return None
    if len(v) < 5 or not (v.isascii() and v.isalnum()):
        return "a passport or permit number has at least 5 letters or digits"
    return None


@dataclass(slots=True)
class PatientResult:
    subject: dict[str, Any]  # the reference the results carry
    entry: dict[str, Any] | None  # the Patient's Bundle entry (None: the registry must know the MRN already)
    mrn: str
    waits_for_mrn: bool = False


class PatientMapper:
    def __init__(self, config: AdapterConfig) -> None:
        self.config = config
        self.org = config.hospital.organization
        self.mrn_system = config.identifiers.mrn
        self.national = NATIONAL_ID_SYSTEMS | {config.identifiers.system("national")}
        self.without_national_id = config.hl7.without_national_id

    def _system_of(self, cx: CX) -> str | None:
        for rule in self.config.identifiers.pid3:
            if rule.type is not None and rule.type.upper() != cx.type.upper():
                continue
            if rule.authority is not None and rule.authority not in (cx.authority, cx.authority_uid):
                continue
            return self.config.identifiers.system(rule.system)
        return None

    def map(self, p: PatientData, seq: int, warnings: list[str], problem: Any) -> PatientResult:
        """``problem(text, code, location)`` records or raises a content problem (the policy's choice)."""
        where = ("PID", seq, 3, 0)
        identifiers: list[dict[str, Any]] = []
        mrn: str | None = None
        national: str | None = None
        for n, cx in enumerate(p.identifiers, start=1):
            system = self._system_of(cx)
            if system is None:
                warnings.append(
                    f"PID-3 repetition {n} (type {cx.type or '-'}, authority "
                    f"{cx.authority or cx.authority_uid or '-'}) matches no identifiers.pid3 rule and was left out"
                )
                continue
            if system in self.national:
                reason = national_id_problem(system, cx.value)
                if reason is not None:
                    raise Hl7Error(
                        f"PID-3 repetition {n}: {reason}",
                        error_code=102,
                        location=where,
                        fix="send the national identifier as on the card",
                    )
                if national is not None:
                    if normalized_id(cx.value) != normalized_id(national):
                        warnings.append(
                            f"PID-3 repetition {n} is a second national identifier; the registry keys a person on "
                            "one, so only the first was sent"
                        )
                    continue
                national = cx.value
            ident: dict[str, Any] = {}
            if cx.type:
                ident["type"] = {"coding": [{"system": V2_0203, "code": cx.type}]}
            ident |= {"system": system, "value": cx.value}
            identifiers.append(ident)
            if system == self.mrn_system and mrn is None:
                mrn = cx.value
        if mrn is None:
            raise Hl7Error(
                f"no identifier maps to this hospital's MRN system ({self.mrn_system})",
                error_code=101,
                location=where,
                fix="send the MRN in PID-3 (type MR) or check identifiers.pid3 in the adapter configuration",
            )
        if national is not None:
            wanted = normalized_id(national)
            for ident in identifiers:
                if ident["system"] not in self.national and wanted in normalized_id(ident["value"]):
                    raise Hl7Error(
                        "a PID-3 identifier other than the national one holds the national identifier",
                        error_code=102,
                        location=where,
                        fix="send the hospital's own MRN in PID-3 type MR, the ID number only as the national one",
                    )
        if national is None:
            if self.without_national_id is NationalIdPolicy.REFUSE:
                raise Hl7Error(
                    "PID-3 carries no national identifier, which the registry keys every patient on",
                    error_code=101,
                    location=where,
                    fix="send the resident ID number in PID-3 (type NNCHN)",
                )
            # hl7.without_national_id: wait — the HIS registered the patient under the MRN (or will)
            reference = f"Patient?identifier={query_escape(self.mrn_system)}|{query_escape(mrn)}"
            return PatientResult({"reference": reference}, None, mrn, waits_for_mrn=True)
        resource: dict[str, Any] = {"resourceType": "Patient", "identifier": identifiers}
        name: dict[str, Any] = {}
        if p.family:
            name["family"] = p.family
        if p.given:
            name["given"] = p.given
        if name:
            resource["name"] = [name]
        if p.sex:
            gender = tables.GENDER.get(p.sex.upper())
            if gender is None:
                problem(f"sex {p.sex!r} is not an HL7 0001 (or GB/T 2261.1) code", 103, ("PID", seq, 8, 0))
            else:
                resource["gender"] = gender
        if p.birth:
            try:
                birth = hl7_datetime(p.birth[:8], self.config.hospital.tz)
            except ValueError:
                raise Hl7Error(
                    f"{p.birth!r} is not a valid date/time", error_code=102, location=("PID", seq, 7, 0)
                ) from None
            if birth is not None:
                resource["birthDate"] = birth
        resource["managingOrganization"] = {"reference": f"Organization/{self.org}"}
        entry = put_entry(resource, self.mrn_system, mrn)
        return PatientResult({"reference": entry["fullUrl"]}, entry, mrn)
