"""The answer to an unexpected error: 500 with an OperationOutcome and ``Connection: close``, logged once.

Starlette's outermost error middleware calls an app's ``Exception`` handler and then re-raises, so the server logged
the error a second time and reset the kept-alive connection under the client, whose next request on it failed. This
middleware sits inside Starlette's, catches what no other handler took, and finishes the exchange itself: RFC 9112
§9.6 — a server that will close the connection after a response says ``Connection: close`` in it, so the client
opens a new one for its next request. The log line is the registry's (masked, docs/design.md §6), and the only one.
"""

from __future__ import annotations

import logging

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.fhir.outcome import operation_outcome
from registry.log_filter import exception_text
from registry.services.redaction import redactor_for

log = logging.getLogger("registry")


class UnexpectedErrorMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            # The client learns only that it failed; the stack stays in the server log — without SQL parameters,
            # database details or validated values, which may hold names and identifiers (docs/design.md §6).
            redactor = redactor_for(scope["app"].state.ctx.identity)
            request_id = (scope.get("state") or {}).get("request_id", "-")
            log.error(
                "unhandled error in %s %s (request %s)\n%s", scope.get("method"), redactor.text(scope.get("path", "")),
                request_id, exception_text(exc, redactor),
            )  # fmt: skip
            if started:  # a response already under way cannot be replaced: the server closes the connection
                raise
            await _refuse(send)


async def _refuse(send: Send) -> None:
    body = orjson.dumps(operation_outcome("fatal", "exception", "internal error; the incident is in the server log"))
    await send(
        {
            "type": "http.response.start",
            "status": 500,
            "headers": [(b"content-type", b"application/fhir+json; charset=utf-8"),
                        (b"content-length", str(len(body)).encode()), (b"connection", b"close")],
        }
    )  # fmt: skip
    await send({"type": "http.response.body", "body": body})
