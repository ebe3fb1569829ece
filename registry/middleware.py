"""ASGI middleware: request ids and the request body size limit (log masking: registry/log_filter.py)."""

from __future__ import annotations

import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.fhir.outcome import operation_outcome


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
    """``HEAD`` on the FHIR API (RFC 9110 §9.3.2; FHIR R4 http.html: read, vread and search answer it): the ``GET``
    of the same URL — the same access decision, audit row, status and headers (``Content-Length`` included) — sent
    without its body. The access policy already folds ``HEAD`` into ``GET`` (``policy.route_for``)."""

    def __init__(self, app: ASGIApp, prefix: str = "/fhir") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if (
            scope["type"] != "http"
            or scope.get("method") != "HEAD"
            or not (path == self.prefix or path.startswith(self.prefix + "/"))
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
