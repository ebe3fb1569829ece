"""OperationOutcome values (FHIR R4 §OperationOutcome): every error the registry returns is one of these."""

from __future__ import annotations

from typing import Any


def operation_outcome(
    severity: str, code: str, diagnostics: str, *, expression: list[str] | None = None
) -> dict[str, Any]:
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = expression
    return {"resourceType": "OperationOutcome", "issue": [issue]}
