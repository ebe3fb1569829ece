"""The one place the registry imports FHIR model classes: ``fhir.resources.R4B`` only (the bare modules are R5);
``registry.fhir.validation`` and the rest take them from here.

R4B is wire-compatible with R4 for every resource the registry uses (CodeSystem, CapabilityStatement,
OperationOutcome, Parameters, Patient, DiagnosticReport, Observation, ImagingStudy, ServiceRequest, Subscription,
Consent…).
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.conceptmap import ConceptMap
from fhir.resources.R4B.consent import Consent
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.endpoint import Endpoint
from fhir.resources.R4B.imagingstudy import ImagingStudy
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.organization import Organization
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.subscription import Subscription

FHIR_VERSION = "4.0.1"
FHIR_JSON = "application/fhir+json"


def model_class(name: str) -> Any:
    """The R4B model of a resource, data type or backbone element by its FHIR name (``HumanName``,
    ``ImagingStudySeries``); ``KeyError`` when there is none."""
    try:
        return get_fhir_model_class(name)
    except (KeyError, ValueError, AttributeError):
        raise KeyError(name) from None


__all__ = [
    "FHIR_JSON",
    "FHIR_VERSION",
    "CapabilityStatement",
    "CodeSystem",
    "ConceptMap",
    "Consent",
    "DiagnosticReport",
    "Endpoint",
    "ImagingStudy",
    "Observation",
    "OperationOutcome",
    "Organization",
    "Patient",
    "Practitioner",
    "ServiceRequest",
    "Subscription",
    "model_class",
]
