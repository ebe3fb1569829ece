"""The OperationDefinitions of the registry's operations (FHIR R4 operationdefinition.html), published at
``/fhir/OperationDefinition/{id}`` and named by the CapabilityStatement (``rest.resource[].operation.definition``).

Each states where the operation is invoked — ``system``, ``type`` (``resource`` names the type) or ``instance`` — and
its parameters as the handlers read and write them (``registry/api/recognition.py``, ``registry/services/pix.py``):

- ``$recognition-check`` and ``$recognition-decision`` on the ServiceRequest type (``POST
  /fhir/ServiceRequest/$…``; both record what they decided, so ``affectsState``);
- ``$ihe-pix`` on the Patient type (``GET /fhir/Patient/$ihe-pix``): IHE PIXm ITI-83 as the registry implements
  it. Its ``base`` is IHE's own definition; the registry's copy says what it answers (a national identifier is never
  a target: the registry does not hold them), so it carries the registry's canonical.

Canonicals: ``https://hr-registry.org.cn/fhir/OperationDefinition/{id}``, served by every registry at
``[base]/OperationDefinition/{id}``.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from catalog.codes import HR_CANONICAL_BASE, NONRECOGNITION_REASONS, RECOGNIZED_ITEMS

CANONICAL = f"{HR_CANONICAL_BASE}/OperationDefinition"
IHE_PIXM = "https://profiles.ihe.net/ITI/PIXm/OperationDefinition/IHE.PIXm.pix"
_SD = "http://hl7.org/fhir/StructureDefinition"


def _p(name: str, use: str, low: int, high: str, type_: str | None, doc: str, **more: Any) -> dict[str, Any]:
    """One ``OperationDefinition.parameter``; a parameter with ``part`` has no type (R4 opd-1)."""
    param: dict[str, Any] = {"name": name, "use": use, "min": low, "max": high, "documentation": doc}
    if type_ is not None:
        param["type"] = type_
    if "targets" in more:
        param["targetProfile"] = [f"{_SD}/{t}" for t in more.pop("targets")]
    param.update(more)
    return param


_CANDIDATE = [
    _p("result", "out", 1, "1", "Reference", "The recognizable result (Observation or ImagingStudy)",
       targets=["Observation", "ImagingStudy"]),
    _p("report", "out", 0, "1", "Reference", "The DiagnosticReport that lists the result",
       targets=["DiagnosticReport"]),
    _p("issuer", "out", 0, "1", "Reference", "The issuing hospital", targets=["Organization"]),
    _p("effective", "out", 1, "1", "dateTime", "When the result was taken (its effective time)"),
    _p("validUntil", "out", 1, "1", "dateTime", "The exact end of the validity window (exclusive)"),
    _p("value", "out", 0, "1", "string", "The result's value, as text"),
    _p("interpretation", "out", 0, "1", "code", "The result's interpretation (v3 ObservationInterpretation)"),
    _p("hrMark", "out", 0, "1", "string", "The HR mark the issuer put on the result"),
    _p("sameHospital", "out", 1, "1", "boolean", "Whether the result is the ordering hospital's own (a duplicate)"),
]  # fmt: skip

_RECOGNITION = [
    _p("order", "out", 0, "1", "Reference", "The order checked (its id as sent)", targets=["ServiceRequest"]),
    _p("item", "out", 0, "1", "Coding", f"The catalog item the order maps to ({RECOGNIZED_ITEMS})"),
    _p("status", "out", 1, "1", "code", "recognizable | same-hospital-duplicate | expired | no-prior-result | "
       "not-in-catalog | not-final | unqualified-issuer | out-of-scope"),
    _p("detail", "out", 0, "1", "string", "Why, in words"),
    _p("card", "out", 0, "1", "string", "The card's uuid, which $recognition-decision names"),
    _p("sharingRestricted", "out", 0, "1", "boolean",
       "True when earlier results exist but the patient paused sharing them with the calling hospital"),
    _p("notice", "out", 0, "1", "string", "患者已限制共享 / The patient has restricted sharing"),
    _p("candidate", "out", 0, "*", None, "Each passing prior result, most recent first", part=_CANDIDATE),
]  # fmt: skip


def _definition(
    op_id: str, name: str, title: str, code: str, resource: str, description: str, *, published: date,
    affects_state: bool, parameters: list[dict[str, Any]], base: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    definition: dict[str, Any] = {
        "resourceType": "OperationDefinition",
        "id": op_id,
        "url": f"{CANONICAL}/{op_id}",
        "name": name,
        "title": title,
        "status": "active",
        "kind": "operation",
        "experimental": False,
        "date": published.isoformat(),
        "publisher": "HR Registry",
        "description": description,
        "affectsState": affects_state,
        "code": code,
        "resource": [resource],
        "system": False,
        "type": True,
        "instance": False,
        "parameter": parameters,
    }
    if base:
        definition["base"] = base
    return definition


def operation_definitions(published: date) -> list[dict[str, Any]]:
    """Every operation the registry serves, as R4 OperationDefinitions."""
    check = _definition(
        "ServiceRequest-recognition-check", "RecognitionCheck", "Check draft orders against recognizable results",
        "recognition-check", "ServiceRequest",
        "For each draft order, whether the patient already has a result another hospital's clinician may recognize "
        "instead of repeating the test (检查检验结果互认), with a card to decide on. Answers only for a patient "
        "registered at the calling hospital (its care context), by break-glass otherwise.",
        published=published, affects_state=True, parameters=[
            _p("patientIdentifier", "in", 0, "*", "Identifier", "An identifier of the patient: the calling "
               "hospital's MRN, or a national identifier (with the MRN, it registers the patient there)"),
            _p("patient", "in", 0, "1", "Reference", "The patient's registry id (one of patient or "
               "patientIdentifier is required)", targets=["Patient"]),
            _p("order", "in", 1, "*", "ServiceRequest", "A draft order; its code by local or standard codes"),
            _p("recognition", "out", 0, "*", None, "One per order, in the order sent", part=_RECOGNITION),
        ],
    )  # fmt: skip
    decision = _definition(
        "ServiceRequest-recognition-decision", "RecognitionDecision", "Record a decision on a recognition card",
        "recognition-decision", "ServiceRequest",
        "The clinician's decision on a card of $recognition-check: recognized, or declined with a non-recognition "
        "reason. Append-only: a repeat of the same decision is answered with new = false.",
        published=published, affects_state=True, parameters=[
            _p("card", "in", 1, "1", "string", "The card's uuid"),
            _p("outcome", "in", 1, "1", "code", "recognized | declined"),
            _p("reason", "in", 0, "1", "Coding", f"Why declined ({NONRECOGNITION_REASONS}); required to decline a "
               "recognizable result"),
            _p("comment", "in", 0, "1", "string", "Free text"),
            _p("card", "out", 1, "1", "string", "The card's uuid"),
            _p("outcome", "out", 1, "1", "code", "The decision recorded"),
            _p("new", "out", 1, "1", "boolean", "false when the decision had been recorded before"),
            _p("resultWithdrawn", "out", 1, "1", "boolean", "The card's result was withdrawn, cancelled or deleted "
               "since the card was issued (recorded; saves nothing in the statistics)"),
        ],
    )  # fmt: skip
    pix = _definition(
        "Patient-ihe-pix", "IHEPIXmQuery", "IHE PIXm Query (ITI-83)", "ihe-pix", "Patient",
        "Given one identifier of a patient, the identifiers and Patient resources every hospital holds for the same "
        "person. Errors as ITI-83 defines them: an unknown identifier is 404, an unknown assigning authority 400, an "
        "unknown target system 403. National identifiers are never returned (the registry holds only their keyed "
        "hash).",
        published=published, affects_state=False, base=IHE_PIXM, parameters=[
            _p("sourceIdentifier", "in", 1, "1", "string", "The patient identifier searched for, as system|value",
               searchType="token"),
            _p("targetSystem", "in", 0, "*", "uri", "The assigning authorities of the identifiers wanted"),
            _p("_format", "in", 0, "1", "code", "The response format (json)"),
            _p("targetIdentifier", "out", 0, "*", "Identifier", "An identifier of the same person"),
            _p("targetId", "out", 0, "*", "Reference", "A Patient of the same person", targets=["Patient"]),
        ],
    )  # fmt: skip
    return [check, decision, pix]
