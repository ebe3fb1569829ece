"""The registry's one exception hierarchy (DESIGN.md §8); one handler turns each into an OperationOutcome.

``code`` is the FHIR IssueType (http://hl7.org/fhir/issue-type) and ``status`` the HTTP status.
"""

from __future__ import annotations


class RegistryError(Exception):
    status: int = 500
    code: str = "exception"
    severity: str = "error"

    def __init__(self, diagnostics: str, *, expression: list[str] | None = None) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        self.expression = expression or []


class BadRequestError(RegistryError):
    status = 400
    code = "invalid"


class NotFoundError(RegistryError):
    status = 404
    code = "not-found"


class NotSupportedError(RegistryError):
    status = 404
    code = "not-supported"


class NotAcceptableError(RegistryError):
    status = 406
    code = "not-supported"


class CatalogUnavailableError(RegistryError):
    """The catalog file is missing or invalid: the registry refuses to start rather than guess."""

    status = 500
    code = "exception"
