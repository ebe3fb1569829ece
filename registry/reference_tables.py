"""The verified LOINC tables shipped in ``data/reference/`` (copied from the shared reference, provenance kept).

``loinc_lab.tsv`` marks each code V (verified), V1 (one reasonable source) or C (conflicting: never to be used);
every code of ``loinc_imaging.tsv`` was read verbatim in its source, so all count as verified.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from registry.settings import PROJECT_ROOT

REFERENCE_DIR = PROJECT_ROOT / "data" / "reference"
USABLE_STATUSES = frozenset({"V", "V1"})


@dataclass(frozen=True, slots=True)
class LoincEntry:
    code: str
    long_name: str
    status: str
    table: str


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        lines = [line for line in f if not line.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t"))


def load_loinc_reference(directory: Path = REFERENCE_DIR) -> dict[str, LoincEntry]:
    """Every LOINC code of the shipped tables, by code."""
    out: dict[str, LoincEntry] = {}
    for row in _rows(directory / "loinc_lab.tsv"):
        out[row["loinc"]] = LoincEntry(row["loinc"], row["long_name_as_seen"], row["status"].strip(), "loinc_lab")
    for row in _rows(directory / "loinc_imaging.tsv"):
        out[row["loinc"]] = LoincEntry(row["loinc"], row["long_common_name"], "V", "loinc_imaging")
    return out
