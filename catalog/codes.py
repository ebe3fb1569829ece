"""Code systems the catalog speaks, by their canonical URIs.

The project publishes its own CodeSystems under ``HR_CANONICAL_BASE``; the others are the standards' own URIs
(LOINC, DICOM DCM, UCUM).
"""

from __future__ import annotations

from dataclasses import dataclass

HR_CANONICAL_BASE = "https://hr-registry.org.cn/fhir"

RECOGNIZED_ITEMS = f"{HR_CANONICAL_BASE}/CodeSystem/recognized-items"
"""Catalog item ids (``L001``…, ``I001``…) as codes."""

REGIONAL_ITEM_CODE = f"{HR_CANONICAL_BASE}/CodeSystem/regional-item-code"
"""The region's own item codes (互认项目编码, e.g. ``JY-SH-001``, ``JC-CT-001``)."""

NONRECOGNITION_REASONS = f"{HR_CANONICAL_BASE}/CodeSystem/nonrecognition-reasons"
"""不互认原因 01–08, 98, 99."""

HR_MARK = f"{HR_CANONICAL_BASE}/CodeSystem/hr-mark"
"""The HR mark (互认标识) as a ``meta.tag`` system."""

LOINC = "http://loinc.org"
DICOM_DCM = "http://dicom.nema.org/resources/ontology/DCM"
UCUM = "http://unitsofmeasure.org"

SYSTEM_ALIASES: dict[str, str] = {
    "loinc": LOINC,
    "regional": REGIONAL_ITEM_CODE,
    "item": RECOGNIZED_ITEMS,
    "dcm": DICOM_DCM,
}
"""Short names accepted in the catalog document and on the command line for ``system|code`` tokens."""


@dataclass(frozen=True, slots=True, order=True)
class Coding:
    """A (system, code) pair, as FHIR ``Coding.system`` / ``Coding.code``."""

    system: str
    code: str

    @classmethod
    def parse(cls, token: str) -> Coding:
        """Parse a FHIR token ``system|code`` (a short alias such as ``loinc`` is accepted for the system).

        A token without ``|`` is taken as a bare code with an empty system.
        """
        system, sep, code = token.partition("|")
        if not sep:
            return cls("", token.strip())
        system = system.strip()
        return cls(SYSTEM_ALIASES.get(system.lower(), system), code.strip())

    def __str__(self) -> str:
        return f"{self.system}|{self.code}"
