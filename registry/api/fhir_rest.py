"""FHIR R4 RESTful interactions (FHIR R4 http.html): read, vread, update, patch, delete, history, create (conditional
by If-None-Exist or the URL's search parameters), search, and the transaction/batch Bundle at the base (its GET
entries too); HEAD is answered by ``registry.middleware.HeadMiddleware``. Handlers translate HTTP to the services and
back; they hold no queries."""

from __future__ import annotations

from email.utils import format_datetime
from functools import partial
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from registry.api.negotiation import require_json
from registry.endpoint import (
    CurrentPrincipal,
    audit_context,
    ctx_of,
    prefer,
    resource_headers,
    stored_response,
)
from registry.errors import BadRequestError, RegistryError
from registry.fhir.bundle import weak_etag
from registry.fhir.json_text import DuplicateKeyError, loads_document
from registry.fhir.patch import JSON_PATCH, Patch, PatchSyntaxError, fhirpath_patch, json_patch
from registry.fhir.response import fhir_response
from registry.services.audit import read_audit_event, search_audit_events
from registry.services.ingest import creation_condition
from registry.services.pix import ihe_pix
from registry.services.search import require_type, subset_of

router = APIRouter(prefix="/fhir", tags=["FHIR"], dependencies=[Depends(require_json)])

_JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")


class UnsupportedMediaTypeError(RegistryError):
    status = 415
    code = "not-supported"


async def _body_text(request: Request) -> str:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in _JSON_TYPES:
        raise UnsupportedMediaTypeError(
            f"Content-Type {content_type or '(none)'} is not supported; send application/fhir+json"
        )
    raw = await request.body()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequestError("the body is not UTF-8 encoded JSON") from None


def patch_document(content_type: str, raw: bytes) -> Patch:
    """The PATCH body by its media type: ``application/json-patch+json`` (RFC 6902) or ``application/fhir+json``
    Parameters (FHIRPath Patch); anything else is 415."""
    media = content_type.split(";")[0].strip().lower()
    if media not in (JSON_PATCH, *_JSON_TYPES):
        raise UnsupportedMediaTypeError(
            f"Content-Type {media or '(none)'} is not a patch format; send {JSON_PATCH} (JSON Patch) or "
            "application/fhir+json (FHIRPath Patch Parameters)"
        )
    try:
        document = loads_document(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"the body is not valid JSON: {exc}") from None
    except DuplicateKeyError as exc:
        raise BadRequestError(f"the body is ambiguous JSON: {exc}") from None
    try:
        return json_patch(document) if media == JSON_PATCH else fhirpath_patch(document)
    except PatchSyntaxError as exc:
        raise BadRequestError(str(exc)) from None


def _params(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


# ------------------------------------------------------------------------------------------ base: Bundles
@router.post("", summary="transaction or batch Bundle", response_class=Response)
async def post_bundle(request: Request, principal: CurrentPrincipal) -> Response:
    ctx = ctx_of(request)
    text = await _body_text(request)
    audit = audit_context(request, principal, "transaction")
    preferred = prefer(request)
    representation = preferred.get("return") == "representation"
    body = await run_in_threadpool(
        partial(ctx.ingest.bundle, reads=ctx.bundle_reads, lenient=preferred.get("handling") != "strict"),
        principal, audit, text, representation=representation,
    )  # fmt: skip
    ctx.metrics.wrote_bundle(orjson.loads(body))
    return fhir_response(body)


# ------------------------------------------------------------------------------------------ operations & AuditEvent
@router.get("/Patient/$ihe-pix", summary="IHE PIXm Query (ITI-83)", response_class=Response)
def pix(request: Request, principal: CurrentPrincipal) -> Response:
    ctx = ctx_of(request)
    audit = audit_context(request, principal, "operation", "Patient")
    return fhir_response(ihe_pix(ctx.reads, principal, audit, _params(request)))


@router.get("/AuditEvent", summary="Search the audit trail (admins)", response_class=Response)
def audit_search(request: Request, principal: CurrentPrincipal) -> Response:
    ctx = ctx_of(request)
    audit = audit_context(request, principal, "search-type", "AuditEvent")
    body = search_audit_events(
        ctx.uow, principal, audit, _params(request), base_url=ctx.settings.fhir_base_url, now=ctx.clock(),
        parse_dates=ctx.reads.date_values, max_count=ctx.settings.max_page_size, limits=ctx.reads.ctx.limits,
    )  # fmt: skip
    return fhir_response(body)


@router.get("/AuditEvent/{event_id}", summary="Read an AuditEvent (admins)", response_class=Response)
def audit_read(event_id: str, request: Request, principal: CurrentPrincipal) -> Response:
    ctx = ctx_of(request)
    audit = audit_context(request, principal, "read", "AuditEvent", event_id)
    return fhir_response(read_audit_event(ctx.uow, principal, audit, event_id, now=ctx.clock()))


# ------------------------------------------------------------------------------------------ type level
@router.get("/{rtype}", summary="search", response_class=Response)
def search(rtype: str, request: Request, principal: CurrentPrincipal) -> Response:
    ctx = ctx_of(request)
    audit = audit_context(request, principal, "search-type", rtype)
    lenient = prefer(request).get("handling") != "strict"  # R4 search.html §3.1.1.4: lenient unless asked
    outcome = ctx.reads.search(principal, audit, rtype, _params(request), lenient=lenient)
    return fhir_response(outcome.body)


@router.post("/{rtype}/_search", summary="search (POST form)", response_class=Response)
async def search_post(rtype: str, request: Request, principal: CurrentPrincipal) -> Response:
    ctx = ctx_of(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/x-www-form-urlencoded", ""):
        raise UnsupportedMediaTypeError("POST _search takes application/x-www-form-urlencoded parameters")
    form = await request.form()
    params = _params(request) + [(k, str(v)) for k, v in form.multi_items()]
    # the audit row records the form's parameters as well (redacted like a query string)
    audit = audit_context(request, principal, "search-type", rtype, query=urlencode(params))
    lenient = prefer(request).get("handling") != "strict"  # R4 search.html §3.1.1.4: lenient unless asked
    outcome = await run_in_threadpool(ctx.reads.search, principal, audit, rtype, params, lenient=lenient)
    return fhir_response(outcome.body)


@router.post(
    "/{rtype}",
    summary="create (If-None-Exist, or search parameters in the URL: conditional create)",
    response_class=Response,
)
async def create(rtype: str, request: Request, principal: CurrentPrincipal) -> Response:
    ctx = ctx_of(request)
    require_type(rtype)
    text = await _body_text(request)
    audit = audit_context(request, principal, "create", rtype)
    condition = creation_condition(request.headers.get("if-none-exist"), _params(request))
    result = await run_in_threadpool(ctx.ingest.create, principal, audit, rtype, text, condition)
    ctx.metrics.wrote(result.stored.type, result.status)
    location = f"{ctx.settings.fhir_base_url}/{result.location}"
    return stored_response(request, result.stored, status=result.status, location=location)


@router.put("/{rtype}", summary="conditional update (search parameters in the URL)", response_class=Response)
async def conditional_update(rtype: str, request: Request, principal: CurrentPrincipal) -> Response:
    ctx = ctx_of(request)
    require_type(rtype)
    if not request.url.query:
        raise BadRequestError("a conditional update needs search parameters, e.g. ?identifier=system|value")
    text = await _body_text(request)
    audit = audit_context(request, principal, "update", rtype)
    result = await run_in_threadpool(ctx.ingest.conditional_update, principal, audit, rtype, request.url.query, text)
    ctx.metrics.wrote(result.stored.type, result.status)
    location = f"{ctx.settings.fhir_base_url}/{result.location}"
    return stored_response(request, result.stored, status=result.status, location=location)


# ------------------------------------------------------------------------------------------ instance level
@router.get("/{rtype}/{rid}", summary="read", response_class=Response)
def read(rtype: str, rid: str, request: Request, principal: CurrentPrincipal) -> Response:
    ctx = ctx_of(request)
    subset = subset_of(_params(request))
    audit = audit_context(request, principal, "read", rtype, rid)
    stored = ctx.reads.read(principal, audit, rtype, rid)
    if_none_match = request.headers.get("if-none-match")
    if if_none_match and weak_etag(stored.version) in [t.strip() for t in if_none_match.split(",")]:
        return Response(status_code=304, headers=resource_headers(stored))
    if subset is not None:
        return fhir_response(subset.apply(stored.body), headers=resource_headers(stored))
    return stored_response(request, stored)


@router.put("/{rtype}/{rid}", summary="update (If-Match for a version-aware update)", response_class=Response)
async def update(rtype: str, rid: str, request: Request, principal: CurrentPrincipal) -> Response:
    ctx = ctx_of(request)
    require_type(rtype)
    text = await _body_text(request)
    audit = audit_context(request, principal, "update", rtype, rid)
    if_match = request.headers.get("if-match")
    result = await run_in_threadpool(ctx.ingest.update, principal, audit, rtype, rid, text, if_match)
    ctx.metrics.wrote(result.stored.type, result.status)
    location = f"{ctx.settings.fhir_base_url}/{result.location}"
    return stored_response(
        request, result.stored, status=result.status, location=location if result.status == 201 else None
    )


@router.patch("/{rtype}/{rid}", summary="patch: JSON Patch or FHIRPath Patch (If-Match)", response_class=Response)
async def patch(rtype: str, rid: str, request: Request, principal: CurrentPrincipal) -> Response:
    ctx = ctx_of(request)
    require_type(rtype)
    document = patch_document(request.headers.get("content-type", ""), await request.body())
    audit = audit_context(request, principal, "patch", rtype, rid)
    if_match = request.headers.get("if-match")
    result = await run_in_threadpool(ctx.ingest.patch, principal, audit, rtype, rid, document, if_match)
    ctx.metrics.wrote(result.stored.type, result.status)
    return stored_response(request, result.stored, status=result.status)


@router.delete("/{rtype}/{rid}", summary="delete", response_class=Response)
def delete(rtype: str, rid: str, request: Request, principal: CurrentPrincipal) -> Response:
    ctx = ctx_of(request)
    audit = audit_context(request, principal, "delete", rtype, rid)
    version = ctx.ingest.delete(principal, audit, rtype, rid)
    ctx.metrics.wrote(rtype, 204)
    headers = {"ETag": weak_etag(version)} if version is not None else {}
    return Response(status_code=204, headers=headers)


@router.get("/{rtype}/{rid}/_history", summary="instance history", response_class=Response)
def history(rtype: str, rid: str, request: Request, principal: CurrentPrincipal) -> Response:
    ctx = ctx_of(request)
    audit = audit_context(request, principal, "history-instance", rtype, rid)
    return fhir_response(ctx.reads.history(principal, audit, rtype, rid, _params(request)))


@router.get("/{rtype}/{rid}/_history/{vid}", summary="vread", response_class=Response)
def vread(rtype: str, rid: str, vid: str, request: Request, principal: CurrentPrincipal) -> Response:
    ctx = ctx_of(request)
    subset = subset_of(_params(request))
    audit = audit_context(request, principal, "vread", rtype, rid)
    version = ctx.reads.vread(principal, audit, rtype, rid, vid)
    headers = {"ETag": weak_etag(version.version), "Last-Modified": format_datetime(version.last_updated, usegmt=True)}
    body = version.body or b"{}"
    return fhir_response(subset.apply(body) if subset is not None else body, headers=headers)
