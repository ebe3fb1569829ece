"""Pure domain of the recognition registry (DESIGN.md §2): items, codes, validity, qualification, reasons and the
recognition rule. Standard library only: no I/O, no clock, no database, no HTTP, no YAML parser."""

from catalog.codes import Coding
from catalog.errors import CatalogError, InvalidCatalogError, InvalidFactError, Problem, UnknownItemError
from catalog.model import (
    Catalog,
    CodeMap,
    Contrast,
    Fee,
    Group,
    ImagingSpec,
    Item,
    Kind,
    LabSpec,
    OrgFacts,
    RegionalListing,
    Scope,
    SearchHit,
    Specimen,
    Validity,
)
from catalog.parse import loinc_check_digit_ok, parse_catalog
from catalog.reasons import REASONS, Reason, reason
from catalog.rule import (
    FINAL_STATUSES,
    Decision,
    Evaluation,
    Order,
    PriorResult,
    Qualification,
    ResultStatus,
    Status,
    recognize,
)

__all__ = [
    "FINAL_STATUSES",
    "REASONS",
    "Catalog",
    "CatalogError",
    "CodeMap",
    "Coding",
    "Contrast",
    "Decision",
    "Evaluation",
    "Fee",
    "Group",
    "ImagingSpec",
    "InvalidCatalogError",
    "InvalidFactError",
    "Item",
    "Kind",
    "LabSpec",
    "Order",
    "OrgFacts",
    "PriorResult",
    "Problem",
    "Qualification",
    "Reason",
    "RegionalListing",
    "ResultStatus",
    "Scope",
    "SearchHit",
    "Specimen",
    "Status",
    "UnknownItemError",
    "Validity",
    "loinc_check_digit_ok",
    "parse_catalog",
    "reason",
    "recognize",
]
