"""``GET /fhir/CodeSystem/{id}``: the recognized-item catalog and the non-recognition reasons (public policy data)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from registry.api.conditional import published_response
from registry.api.negotiation import require_json
from registry.context import AppContext
from registry.errors import NotFoundError

router = APIRouter(prefix="/fhir", tags=["FHIR"], dependencies=[Depends(require_json)])


@router.get("/CodeSystem/{resource_id}", summary="Read a CodeSystem", response_class=Response)
def read_codesystem(resource_id: str, request: Request) -> Response:
    ctx: AppContext = request.app.state.ctx
    published = ctx.codesystems.get(resource_id)
    if published is None:
        known = ", ".join(sorted(ctx.codesystems))
        raise NotFoundError(f"CodeSystem/{resource_id} is not known; this server publishes: {known}")
    return published_response(request, published)
