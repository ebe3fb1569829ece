"""Purpose of use and break-glass (reference: FHIR R4 security-labels §6.1.1.3; v3-ActReason).

A request breaks the glass with the R4 request label ``Category: http://terminology.hl7.org/CodeSystem/v3-ActReason#BTG;
scheme="http://hl7.org/fhir/tag/security"`` and states why in ``X-Break-Glass-Reason`` (UTF-8, percent-encoding
allowed; this header is the registry's own, since neither FHIR nor CDS Hooks carries a free-text reason). The
clinician's reason is required. Break-glass opens one patient's records outside the care context; every such request
is audited with ``purposeOfEvent`` BTG and the reason, shown to the patient and counted in the statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from registry.errors import BadRequestError

ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
BTG = "BTG"
SECURITY_SCHEME = "http://hl7.org/fhir/tag/security"
REASON_HEADER = "x-break-glass-reason"
MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class BreakGlass:
    """An explicit, reasoned policy override (v3-ActReason BTG)."""

    reason: str
    code: str = BTG


def _labels(category: str) -> list[str]:
    """The ``system#code`` terms of a ``Category`` header (RFC 8288-like: ``term; scheme=…; label=…, term2``)."""
    out: list[str] = []
    for part in category.split(","):
        term = part.split(";", 1)[0].strip().strip('"')
        if term:
            out.append(term)
    return out


def break_glass_of(category: str | None, reason: str | None) -> BreakGlass | None:
    """The break-glass a request asks for, or None; a label without a reason (or a reason without the label) is a
    clear 400 — an override is never implied."""
    asked = any(term == f"{ACT_REASON}#{BTG}" for term in _labels(category or ""))
    text = unquote(reason or "").strip()
    if not asked and not text:
        return None
    if not asked:
        raise BadRequestError(
            f"X-Break-Glass-Reason needs the break-glass label: Category: {ACT_REASON}#{BTG}; "
            f'scheme="{SECURITY_SCHEME}"'
        )
    if not text:
        raise BadRequestError("breaking the glass needs a reason: send it in X-Break-Glass-Reason")
    if len(text) > MAX_REASON:
        raise BadRequestError(f"the break-glass reason is longer than {MAX_REASON} characters")
    return BreakGlass(text)
