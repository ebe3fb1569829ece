"""The DICOMweb gateway for the pages' image viewer: the token API's sub-paths under ``/portal/dicomweb`` (a signed-in
patient) and ``/clinician/dicomweb`` (a signed-in clinician), answered by the same service with the same policy
(``registry.dicomweb_routes``). A clinician who opened the report by break-glass sends the break-glass headers
(``Category`` + ``X-Break-Glass-Reason``, ``registry.services.policy.purpose``) with each fetch, as on the API.

These are fetched by the viewer's script, not navigated to: without a session of the area the answer is a 401
OperationOutcome (audited), not the sign-in page's redirect."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request

from registry.auth import Principal
from registry.dicomweb_routes import dicomweb_router
from registry.endpoint import audit_context, ctx_of
from registry.errors import UnauthorizedError
from registry.services.audit import AuditTrail, audit_row
from registry.web.session import signed_in


def _session_caller(area: str) -> Callable[[Request], Principal]:
    def caller(request: Request) -> Principal:
        ctx = ctx_of(request)
        principal = signed_in(request, ctx, area)
        if principal is None:
            diagnostics = f"sign in to the {area} pages first (the images are shown to a signed-in session)"
            audit = audit_context(request, None, "read", "ImagingStudy")
            AuditTrail(ctx.uow).record([audit_row(audit, now=ctx.clock(), status=401, detail=diagnostics)])
            error = UnauthorizedError(diagnostics)
            error.challenge_error = False
            raise error
        return principal

    return caller


portal_router = dicomweb_router("/portal/dicomweb", _session_caller("portal"), include_in_schema=False)
clinician_router = dicomweb_router("/clinician/dicomweb", _session_caller("clinician"), include_in_schema=False)
