"""The DICOMweb routes (DICOM PS3.18): the same sub-paths under the token API (``/dicomweb``) and under the pages
(``/portal/dicomweb`` for a signed-in patient, ``/clinician/dicomweb`` for a signed-in clinician), one handler each,
all answered by ``registry.services.imaging`` — they parse the request and render the answer; the service and the
policy decide. ``registry.api.dicomweb`` and ``registry.web.dicomweb_pages`` mount them with their way of knowing the
caller.

Errors are OperationOutcomes (``application/fhir+json``): 400 bad input, 401 no token or session, 403 refused by the
policy, 404 no such study (or a series / instance not of it), 406 no media type the gateway serves, 502 the PACS
unreachable or not configured, 504 the PACS too slow. A PACS failing while a streamed answer is under way cannot be
turned into an error any more: the response then ends incomplete (the client's transfer fails, it does not look
complete).
"""

from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse
from starlette.types import Send

from registry.auth import Principal
from registry.endpoint import audit_context, ctx_of
from registry.errors import RegistryError
from registry.services.audit import AuditContext, AuditTrail, audit_row
from registry.services.imaging import TRUNCATED, Forward, Forwarded, StreamBrokenError, parameters

Resolve = Callable[..., Any]
UID = Annotated[str, Path(max_length=64, description="a DICOM UID (digits and dots)")]
FRAME = Annotated[str, Path(max_length=9, description="one frame number, counted from 1")]


class ForwardedResponse(StreamingResponse):
    """A streamed answer of the PACS: the upstream response is closed however the stream ends; a PACS failing
    mid-way ends the response without its last message, so the server closes the connection and the client sees
    an incomplete transfer."""

    def __init__(self, forwarded: Forwarded) -> None:
        if forwarded.chunks is None:
            raise ValueError("a streamed answer needs its chunks")
        super().__init__(forwarded.chunks, media_type=forwarded.media_type, headers=forwarded.headers)
        self.forwarded = forwarded

    async def stream_response(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        complete = False
        try:
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            complete = True
        except StreamBrokenError:
            pass  # logged where it happened; the response stays incomplete on purpose
        finally:
            await self.forwarded.close()
        if complete:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def _render(forwarded: Forwarded) -> Response:
    if forwarded.chunks is not None:
        return ForwardedResponse(forwarded)
    return Response(forwarded.body or b"", media_type=forwarded.media_type, headers=forwarded.headers)


async def _refused(request: Request, audit: AuditContext, exc: RegistryError) -> None:
    ctx = ctx_of(request)
    row = audit_row(audit, now=ctx.clock(), status=exc.status, detail=f"DICOMweb: {exc.diagnostics}")
    await run_in_threadpool(AuditTrail(ctx.uow).record, [row])


def _params(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


async def _serve(
    request: Request, principal: Principal, prefix: str, study: str, build: Callable[[], Forward]
) -> Response:
    ctx = ctx_of(request)
    audit = audit_context(request, principal, "read", "ImagingStudy")
    try:
        ask = build()
    except RegistryError as exc:
        await _refused(request, audit, exc)
        raise
    opened = ctx.imaging.decided(principal, audit, study)  # a decision of the last seconds: no thread, no query
    if opened is None:
        opened = await run_in_threadpool(ctx.imaging.open, principal, audit, study)
    forwarded = await ctx.imaging.forward(opened, ask, f"{ctx.settings.public_base_url}{prefix}")
    return _render(forwarded)


def dicomweb_router(prefix: str, caller: Resolve, *, include_in_schema: bool, tags: Sequence[str] = ()) -> APIRouter:
    """The DICOMweb routes under ``prefix``; ``caller``: the dependency that yields the calling principal (or
    refuses with 401)."""
    router = APIRouter(prefix=prefix, include_in_schema=include_in_schema, tags=list(tags))
    Caller = Annotated[Principal, Depends(caller)]  # noqa: N806 - a type, named like one

    builders: dict[str, Callable[[parameters.Target, list[tuple[str, str]], str | None], Forward]] = {
        "retrieve": parameters.retrieve,
        "metadata": parameters.metadata,
        "qido": parameters.qido,
        "rendered": lambda w, p, a: parameters.rendered(w, p, a, thumbnail=False),
        "thumbnail": lambda w, p, a: parameters.rendered(w, p, a, thumbnail=True),
    }

    def add(path: str, summary: str, endpoint: Callable[..., Awaitable[Response]]) -> None:
        router.add_api_route(path, endpoint, methods=["GET"], response_class=Response, summary=summary)

    def asker(
        request: Request,
        kind: str,
        study: str,
        series: str | None = None,
        instance: str | None = None,
        frame: str | None = None,
    ) -> Callable[[], Forward]:
        def ask() -> Forward:
            where = parameters.target(study, series, instance, frame)
            return builders[kind](where, _params(request), request.headers.get("accept"))

        return ask

    def study_level(kind: str) -> Callable[..., Awaitable[Response]]:
        async def handler(study: UID, request: Request, principal: Caller) -> Response:
            return await _serve(request, principal, prefix, study, asker(request, kind, study))

        return handler

    def series_level(kind: str) -> Callable[..., Awaitable[Response]]:
        async def handler(study: UID, series: UID, request: Request, principal: Caller) -> Response:
            return await _serve(request, principal, prefix, study, asker(request, kind, study, series))

        return handler

    def instance_level(kind: str) -> Callable[..., Awaitable[Response]]:
        async def handler(study: UID, series: UID, instance: UID, request: Request, principal: Caller) -> Response:
            return await _serve(request, principal, prefix, study, asker(request, kind, study, series, instance))

        return handler

    def frame_level(kind: str) -> Callable[..., Awaitable[Response]]:
        async def handler(
            study: UID, series: UID, instance: UID, frames: FRAME, request: Request, principal: Caller
        ) -> Response:
            ask = asker(request, kind, study, series, instance, frames)
            return await _serve(request, principal, prefix, study, ask)

        return handler

    async def studies(request: Request, principal: Caller) -> Response:
        ctx = ctx_of(request)
        audit = audit_context(request, principal, "search-type", "ImagingStudy")
        params = _params(request)
        try:
            ask = parameters.qido(None, params, request.headers.get("accept"))
        except RegistryError as exc:
            await _refused(request, audit, exc)
            raise
        named = [u.strip() for k, v in params if k.lower() in ("studyinstanceuid", "0020000d") for u in v.split(",")]
        readable, more = await run_in_threadpool(ctx.imaging.readable_studies, principal, audit, named or None)
        forwarded = await ctx.imaging.query_studies(readable, ask, f"{ctx.settings.public_base_url}{prefix}")
        if more:
            forwarded.headers["Warning"] = ", ".join(w for w in (forwarded.headers.get("Warning"), TRUNCATED) if w)
        return _render(forwarded)

    s, se = "/studies/{study}", "/studies/{study}/series/{series}"
    i = f"{se}/instances/{{instance}}"
    router.add_api_route("/studies", studies, methods=["GET"], response_class=Response,
                         summary="QIDO-RS: the studies the caller may read")  # fmt: skip
    add(s, "WADO-RS: the study's instances (multipart/related; type=application/dicom)", study_level("retrieve"))
    add(f"{s}/metadata", "WADO-RS: the study's metadata (DICOM JSON)", study_level("metadata"))
    add(f"{s}/series", "QIDO-RS: the series of the study", study_level("qido"))
    add(f"{s}/thumbnail", "a thumbnail of the study (JPEG or PNG)", study_level("thumbnail"))
    add(se, "WADO-RS: the series' instances", series_level("retrieve"))
    add(f"{se}/metadata", "WADO-RS: the series' metadata", series_level("metadata"))
    add(f"{se}/instances", "QIDO-RS: the instances of the series", series_level("qido"))
    add(f"{se}/thumbnail", "a thumbnail of the series", series_level("thumbnail"))
    add(i, "WADO-RS: the instance", instance_level("retrieve"))
    add(f"{i}/metadata", "WADO-RS: the instance's metadata", instance_level("metadata"))
    add(f"{i}/rendered", "the instance rendered (window, viewport, quality)", instance_level("rendered"))
    add(f"{i}/thumbnail", "a thumbnail of the instance", instance_level("thumbnail"))
    add(f"{i}/frames/{{frames}}/rendered", "one frame rendered (frames count from 1)", frame_level("rendered"))
    add(f"{i}/frames/{{frames}}/thumbnail", "a thumbnail of one frame", frame_level("thumbnail"))
    return router
