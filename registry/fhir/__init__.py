"""FHIR R4 plumbing: R4B models (wire-compatible with R4 here), OperationOutcome and fhir+json responses."""
