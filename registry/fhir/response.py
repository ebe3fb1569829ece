"""``application/fhir+json`` responses serialized with orjson, with ETag and Last-Modified where known."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.responses import Response

from registry.fhir.models import FHIR_JSON


class FhirResponse(Response):
    media_type = f"{FHIR_JSON}; charset=utf-8"

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return orjson.dumps(content)


class JsonResponse(Response):
    """``application/json`` (CDS Hooks and other plain JSON APIs), serialized with orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def etag_of(body: bytes) -> str:
    """A strong validator derived from the exact bytes served."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def fhir_response(
    content: Mapping[str, Any] | bytes, *, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> FhirResponse:
    return FhirResponse(content, status_code=status_code, headers=dict(headers or {}))
