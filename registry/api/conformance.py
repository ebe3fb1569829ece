"""``GET /fhir/OperationDefinition/{id}`` and ``GET /fhir/SearchParameter/{id}``: the definitions the
CapabilityStatement names by the registry's canonicals (FHIR R4 operationdefinition.html, searchparameter.html).
Conformance resources, open like ``/fhir/metadata``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from registry.api.conditional import published_response
from registry.api.negotiation import require_json
from registry.endpoint import ctx_of
from registry.errors import NotFoundError

router = APIRouter(prefix="/fhir", tags=["FHIR"], dependencies=[Depends(require_json)])


def _published(request: Request, rtype: str, resource_id: str) -> Response:
    published = ctx_of(request).conformance.get((rtype, resource_id))
    if published is None:
        known = ", ".join(sorted(i for t, i in ctx_of(request).conformance if t == rtype))
        raise NotFoundError(f"{rtype}/{resource_id} is not known; this server publishes: {known}")
    return published_response(request, published)


@router.get("/OperationDefinition/{resource_id}", summary="Read an OperationDefinition", response_class=Response)
def read_operation_definition(resource_id: str, request: Request) -> Response:
    return _published(request, "OperationDefinition", resource_id)


@router.get("/SearchParameter/{resource_id}", summary="Read a SearchParameter", response_class=Response)
def read_search_parameter(resource_id: str, request: Request) -> Response:
    return _published(request, "SearchParameter", resource_id)
