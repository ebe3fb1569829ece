"""FHIR content negotiation (FHIR R4 §http.html#mime-type): JSON only; ``_format`` wins over ``Accept``."""

from __future__ import annotations

from fastapi import Request

from registry.errors import NotAcceptableError

_JSON_FORMATS = {"json", "application/json", "application/fhir+json", "application/json+fhir"}


def require_json(request: Request) -> None:
    fmt = request.query_params.get("_format")
    if fmt is not None:
        if fmt.split(";")[0].strip().lower() not in _JSON_FORMATS:
            raise NotAcceptableError(f"_format {fmt!r} is not supported; this server speaks application/fhir+json")
        return
    accept = request.headers.get("accept")
    if not accept:
        return
    types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if any(t in _JSON_FORMATS or t in ("*/*", "application/*") for t in types):
        return
    raise NotAcceptableError(f"Accept {accept!r} is not supported; this server speaks application/fhir+json")
