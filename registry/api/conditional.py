"""Serving a pre-serialized resource with ETag and ``If-None-Match`` → 304 (RFC 9110 §13.1.2)."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from registry.context import Published
from registry.fhir.response import fhir_response


def published_response(request: Request, published: Published) -> Response:
    inm = request.headers.get("if-none-match")
    if inm and published.etag in (t.strip() for t in inm.split(",")):
        return Response(status_code=304, headers={"ETag": published.etag})
    return fhir_response(published.body, headers={"ETag": published.etag, "Cache-Control": "public, max-age=300"})
