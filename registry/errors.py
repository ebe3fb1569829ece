"""The registry's one exception hierarchy (docs/design.md §8); one handler turns each into an OperationOutcome.

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
        self.audited = False  # set once an audit row records this error


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


class SchemaOutOfDateError(RegistryError):
    """The database is behind the code's migrations; the registry refuses to start."""

    status = 500
    code = "exception"


class UnauthorizedError(RegistryError):
    status = 401
    code = "login"
    challenge_error = True  # False when no credentials were sent at all (RFC 6750 §3.1)


class ForbiddenError(RegistryError):
    status = 403
    code = "forbidden"


class GoneError(RegistryError):
    status = 410
    code = "deleted"


class ConflictError(RegistryError):
    status = 409
    code = "conflict"


class PreconditionFailedError(RegistryError):
    status = 412
    code = "conflict"


class UnprocessableError(RegistryError):
    """Valid FHIR that breaks a rule of the registry (unknown patient, unresolvable reference…)."""

    status = 422
    code = "processing"


class BusinessRuleError(UnprocessableError):
    """A resource that breaks a content rule of the registry (a report listing another patient's result…): 422 with
    issue code ``business-rule`` — what it says is wrong, not who says it (that is a 403)."""

    code = "business-rule"


class NotSupportedPatchError(UnprocessableError):
    """A well-formed PATCH asking for what the server does not support (a FHIRPath beyond simple paths)."""

    code = "not-supported"


class ReferenceNotFoundError(UnprocessableError):
    """A reference to a resource the registry does not have (yet): issue code ``not-found``, so a sender can tell
    "wait for the patient or study to arrive" from a message that will never succeed."""

    code = "not-found"


class ConditionNotFoundError(PreconditionFailedError):
    """A conditional reference that matched nothing (412 with issue code ``not-found``)."""

    code = "not-found"


class TooLargeError(RegistryError):
    status = 413
    code = "too-costly"


class TooCostlyError(BadRequestError):
    """A search past the registry's bounds on its size (parameters, values, length): 400 ``too-costly`` naming the
    limit (FHIR R4 search §3.1.1.x: a server may refuse a search it considers too costly)."""

    code = "too-costly"


class RateLimitedError(RegistryError):
    status = 429
    code = "throttled"

    def __init__(self, diagnostics: str, *, retry_after: int) -> None:
        super().__init__(diagnostics)
        self.retry_after = retry_after


class InvalidResourceError(RegistryError):
    """A resource failing validation; carries every issue with its FHIRPath-like location."""

    status = 400
    code = "invalid"

    def __init__(self, diagnostics: str, *, issues: list[tuple[str, str]]) -> None:
        super().__init__(diagnostics)
        self.issues = issues


class BadGatewayError(RegistryError):
    """The registry, as a gateway, got no usable answer from the system behind it (a hospital's PACS): 502."""

    status = 502
    code = "transient"


class GatewayTimeoutError(RegistryError):
    """The system behind the gateway did not answer within the configured time: 504."""

    status = 504
    code = "timeout"
