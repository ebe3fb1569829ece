"""FHIR content negotiation (FHIR R4 http.html §3.1.0.1.10 "Content Types and encodings"): JSON only; ``_format``
wins over ``Accept``. A media type's ``fhirVersion`` parameter (http.html §3.1.0.1.11 "FHIR Version parameter") must
name R4 — ``4.0`` (or ``4.0.0``, ``4.0.1``); another version is 406, R4 leaving the status code open."""

from __future__ import annotations

from fastapi import Request

from registry.errors import NotAcceptableError

_JSON_FORMATS = {"json", "application/json", "application/fhir+json", "application/json+fhir"}
R4_VERSIONS = frozenset({"4.0", "4.0.0", "4.0.1"})


def _media_type(part: str) -> tuple[str, str | None]:
    """(type, fhirVersion) of one media range such as ``application/fhir+json; fhirVersion=4.0; q=0.9``."""
    kind, *params = (p.strip() for p in part.split(";"))
    version = None
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "fhirversion":
            version = value.strip().strip('"')
    return kind.lower(), version


def require_json(request: Request) -> None:
    fmt = request.query_params.get("_format")
    if fmt is not None:
        kind, version = _media_type(fmt)
        if kind not in _JSON_FORMATS:
            raise NotAcceptableError(f"_format {fmt!r} is not supported; this server speaks application/fhir+json")
        if version is not None and version not in R4_VERSIONS:
            raise NotAcceptableError(f"_format asks for FHIR version {version}; this server speaks FHIR R4 (4.0)")
        return
    accept = request.headers.get("accept")
    if not accept:
        return
    ranges = [_media_type(part) for part in accept.split(",") if part.strip()]
    json_ranges = [(k, v) for k, v in ranges if k in _JSON_FORMATS or k in ("*/*", "application/*")]
    if any(v is None or v in R4_VERSIONS for _k, v in json_ranges):
        return
    if json_ranges:
        versions = ", ".join(sorted({v for _k, v in json_ranges if v}))
        raise NotAcceptableError(f"Accept asks for FHIR version {versions}; this server speaks FHIR R4 (4.0)")
    raise NotAcceptableError(f"Accept {accept!r} is not supported; this server speaks application/fhir+json")
