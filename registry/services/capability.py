"""The CapabilityStatement (FHIR R4 §CapabilityStatement): exactly what this server supports, nothing more."""

from __future__ import annotations

from datetime import date
from typing import Any

from registry.fhir.models import FHIR_VERSION

SOFTWARE_VERSION = "0.1.0"


def capability_statement(fhir_base_url: str, *, published: date) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "id": "hr-registry",
        "name": "HRRegistry",
        "title": "HR Registry — cross-hospital result mutual-recognition registry (检查检验结果互认)",
        "status": "active",
        "date": published.isoformat(),
        "publisher": "HR Registry",
        "kind": "instance",
        "software": {"name": "hr-registry", "version": SOFTWARE_VERSION},
        "implementation": {"description": "HR Registry FHIR R4 endpoint", "url": fhir_base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "The recognized-item catalog and the non-recognition reasons are published as "
                "CodeSystems and need no token.",
                "resource": [
                    {
                        "type": "CodeSystem",
                        "interaction": [{"code": "read"}],
                        "readHistory": False,
                        "updateCreate": False,
                    }
                ],
            }
        ],
    }
