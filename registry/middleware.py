"""ASGI middleware: request ids, the request body size limit, CORS and the read-your-writes marks (log masking:
registry/log_filter.py)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.fhir.outcome import operation_outcome
from registry.fhir.response import fhir_response
from registry.store.replica import ReplicaReads, readers


class BodyLimitMiddleware:
    """Refuse a body larger than ``max_bytes`` with 413 and an OperationOutcome — by Content-Length before reading,
    and by counting for chunked bodies — so an oversized upload never reaches a handler."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    raise _TooLarge
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(send)
        except Exception:
            if refused and not started:
                await self._refuse(send)
            else:
                raise

    async def _refuse(self, send: Send) -> None:
        import orjson

        body = orjson.dumps(
            operation_outcome("error", "too-costly", f"the request body exceeds the limit of {self.max_bytes} bytes")
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/fhir+json; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())],
            }
        )  # fmt: skip
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):  # noqa: N818 - control flow inside the middleware
    pass


class RequestIdMiddleware:
    """Give every request an id (``X-Request-Id``, echoed if the client sent a sane one) for logs and audit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if given and len(given) <= 40 and given.replace("-", "").isalnum() else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        await self.app(scope, receive, send_with_id)


class HeadMiddleware:
    """``HEAD`` on the FHIR API and the DICOMweb gateway (RFC 9110 §9.3.2: a server that answers ``GET`` answers
    ``HEAD``; FHIR R4 http.html: read, vread and search answer it): the ``GET`` of the same URL — the same access
    decision, audit row, status and headers (``Content-Length`` included) — sent without its body. The access policy
    already folds ``HEAD`` into ``GET`` (``policy.route_for``)."""

    def __init__(self, app: ASGIApp, prefixes: tuple[str, ...] = ("/fhir", "/dicomweb")) -> None:
        self.app = app
        self.prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if (
            scope["type"] != "http"
            or scope.get("method") != "HEAD"
            or not any(path == p or path.startswith(p + "/") for p in self.prefixes)
        ):
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if not message.get("more_body", False):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            await send(message)

        scope["method"] = "GET"  # in place: the outer middleware (metrics) reads the route the router sets here
        try:
            await self.app(scope, receive, without_body)
        finally:
            scope["method"] = "HEAD"


class CORSPolicyMiddleware(CORSMiddleware):
    """CORS for browser apps (Fetch standard §3.2; a SMART web app calling the FHIR API from its own origin), for the
    origins of ``REGISTRY_CORS_ORIGINS`` only; not installed at all when there are none.

    A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is answered here, before routing
    and so before the access policy: a browser never sends credentials with it, and what it asks for is checked when
    the request itself comes, with its token. The FHIR methods and the request headers FHIR clients send are allowed;
    the response headers they read are exposed. A preflight that is refused (origin, method or header not allowed) is
    a 403 OperationOutcome without any ``Access-Control-*`` header, and the answers to a disallowed origin carry none
    either. Tokens travel in ``Authorization``, never cookies: no ``Access-Control-Allow-Credentials``."""

    METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
    REQUEST_HEADERS = (
        "Authorization", "Content-Type", "Accept", "Prefer", "If-Match", "If-None-Exist", "If-None-Match",
        "If-Modified-Since", "X-Request-Id", "Category", "X-Break-Glass-Reason",
    )  # fmt: skip
    EXPOSED_HEADERS = (
        "Location", "ETag", "Content-Location", "Last-Modified", "X-Request-Id", "WWW-Authenticate", "Retry-After",
    )  # fmt: skip

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        super().__init__(
            app,
            allow_origins=origins,
            allow_methods=self.METHODS,
            allow_headers=self.REQUEST_HEADERS,
            expose_headers=self.EXPOSED_HEADERS,
            max_age=600,
        )

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code == 200:
            return response
        refused = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        diagnostics = f"CORS preflight refused: {refused} not allowed"
        return fhir_response(operation_outcome("error", "forbidden", diagnostics), status_code=403,
                             headers={"Vary": "Origin"})  # fmt: skip

    async def send(self, message: Message, send: Send, request_headers: Headers) -> None:
        origin = request_headers.get("origin")
        if message["type"] == "http.response.start" and origin is not None and not self.is_allowed_origin(origin):
            headers = MutableHeaders(scope=message)
            headers["Vary"] = ", ".join([*headers.getlist("Vary"), "Origin"])
            await send(message)
            return
        await super().send(message, send, request_headers)


class ReadYourWritesMiddleware:
    """With reads from a standby (``registry.store.replica``): once a client's write has been handled — any request
    but GET/HEAD/OPTIONS answered below 400 — the primary's WAL position is kept as the client's mark *before* the
    answer starts, so the client's next read, on whichever node, is served by a standby that has replayed it.

    An order check keeps no mark: it writes only its own log, which no client reads back, and a mark would send the
    hospital's next check to the primary until the standby had replayed the last one. (A check that registers its
    patient marks that write itself: ``services.recognition``.)"""

    SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
    CHECKS = frozenset({("POST", "/fhir/ServiceRequest/$recognition-check"), ("POST", "/cds-services/{service_id}")})

    def __init__(self, app: ASGIApp, replica: ReplicaReads) -> None:
        self.app = app
        self.replica = replica

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in self.SAFE:
            await self.app(scope, receive, send)
            return

        async def marking_send(message: Message) -> None:
            route = getattr(scope.get("route"), "path", None)
            if message["type"] == "http.response.start" and message["status"] < 400 and \
                    (scope["method"], route) not in self.CHECKS:  # fmt: skip
                principal = (scope.get("state") or {}).get("principal")
                if principal is not None:
                    await run_in_threadpool(
                        self.replica.mark, readers(principal.client_id, principal.org_id, principal.patient_key)
                    )
            await send(message)

        await self.app(scope, receive, marking_send)
