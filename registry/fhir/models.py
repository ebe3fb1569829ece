"""The one place FHIR model classes are imported: ``fhir.resources.R4B`` only (the bare modules are R5).

R4B is wire-compatible with R4 for every resource the registry uses (CodeSystem, CapabilityStatement,
OperationOutcome, Parameters, Patient, DiagnosticReport, Observation, ImagingStudy, ServiceRequest…).
"""

from __future__ import annotations

from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.codesystem import CodeSystem
from fhir.resources.R4B.operationoutcome import OperationOutcome

FHIR_VERSION = "4.0.1"
FHIR_JSON = "application/fhir+json"

__all__ = ["FHIR_JSON", "FHIR_VERSION", "CapabilityStatement", "CodeSystem", "OperationOutcome"]
