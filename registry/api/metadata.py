"""``GET /fhir/metadata``: the CapabilityStatement (FHIR R4 §http.html#capabilities). Open to all."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from registry.api.conditional import published_response
from registry.api.negotiation import require_json
from registry.context import AppContext

router = APIRouter(prefix="/fhir", tags=["FHIR"], dependencies=[Depends(require_json)])


@router.get("/metadata", summary="CapabilityStatement", response_class=Response)
def metadata(request: Request) -> Response:
    ctx: AppContext = request.app.state.ctx
    return published_response(request, ctx.metadata)


@router.api_route("/metadata", methods=["POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
def metadata_is_read_only(request: Request) -> Response:
    raise StarletteHTTPException(405, f"{request.method} is not supported on /fhir/metadata")
