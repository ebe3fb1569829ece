"""The composition root: ``create_app(settings)`` wires settings, catalog and routers (docs/design.md §2, §8).

``uvicorn registry.app:create_app --factory`` serves the registry with settings from ``REGISTRY_*`` variables.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from catalog import InvalidCatalogError
from registry import openapi
from registry.api import (
    auth_token,
    codesystems,
    conformance,
    dicomweb,
    fhir_rest,
    health,
    metadata,
    operations,
    recognition,
)
from registry.auth import utcnow
from registry.catalog_file import load_catalog
from registry.cds import routes as cds_routes
from registry.context import AppContext
from registry.errors import (
    CatalogUnavailableError,
    InvalidResourceError,
    RateLimitedError,
    RegistryError,
    SchemaOutOfDateError,
    UnauthorizedError,
)
from registry.failure import UnexpectedErrorMiddleware
from registry.fhir.outcome import operation_outcome
from registry.fhir.response import fhir_response
from registry.log_filter import install_log_masking
from registry.metrics import MetricsMiddleware
from registry.middleware import (
    BodyLimitMiddleware,
    CORSPolicyMiddleware,
    HeadMiddleware,
    ReadYourWritesMiddleware,
    RequestIdMiddleware,
)
from registry.route_table import allowed_methods, unguarded_routes
from registry.services.notifications import Worker as NotificationWorker
from registry.services.notifications import worker_for
from registry.services.redaction import redactor_for
from registry.services.subscriptions import DeliveryLoop, DeliveryWorker
from registry.settings import Settings
from registry.store import migrate
from registry.store.db import limit_statements, timed_out
from registry.web import pages

log = logging.getLogger("registry")

_HTTP_ISSUE = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
               406: "not-supported", 409: "conflict", 410: "deleted", 412: "conflict", 413: "too-costly",
               415: "not-supported", 422: "processing", 429: "throttled"}  # fmt: skip


def _outcome_response(status: int, code: str, diagnostics: str, *, expression: list[str] | None = None) -> Response:
    severity = "error" if status < 500 else "fatal"
    return fhir_response(operation_outcome(severity, code, diagnostics, expression=expression), status_code=status)


def _transient(exc: OperationalError) -> bool:
    if exc.connection_invalidated or not type(exc.orig).__module__.startswith("sqlite3"):
        return True
    return any(word in str(exc.orig) for word in ("locked", "unable to open", "disk I/O"))


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RegistryError)
    async def _registry_error(_request: Request, exc: RegistryError) -> Response:
        if isinstance(exc, InvalidResourceError) and exc.issues:
            issues = [
                {"severity": "error", "code": "invalid", "diagnostics": msg, **({"expression": [loc]} if loc else {})}
                for loc, msg in exc.issues
            ]
            return fhir_response({"resourceType": "OperationOutcome", "issue": issues}, status_code=400)
        response = _outcome_response(exc.status, exc.code, exc.diagnostics, expression=exc.expression)
        if isinstance(exc, UnauthorizedError):
            challenge = 'Bearer realm="hr-registry"'
            if exc.challenge_error:
                description = exc.diagnostics.replace('"', "'")
                challenge += f', error="invalid_token", error_description="{description}"'
            response.headers["WWW-Authenticate"] = challenge
        if isinstance(exc, RateLimitedError):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            detail = f"{request.method} is not supported on {request.url.path}"
        response = _outcome_response(exc.status_code, _HTTP_ISSUE.get(exc.status_code, "processing"), detail)
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        if exc.status_code == 405:
            response.headers["Allow"] = ", ".join(allowed_methods(request.app, request.url.path))
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> Response:
        parts = []
        for err in exc.errors()[:20]:
            loc = ".".join(str(x) for x in err.get("loc", ()))
            parts.append(f"{loc}: {err.get('msg', 'invalid')}")
        return _outcome_response(400, "invalid", "; ".join(parts) or "invalid request")

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, _exc: ClientDisconnect) -> Response:
        # The client's fault, not the server's: one info line, no traceback (and no error). Nobody reads the answer;
        # uvicorn writes no access line for a closed connection, so this is the request's only line.
        redactor = redactor_for(request.app.state.ctx.identity)
        log.info(
            "client closed the connection before its request body was read: %s %s (request %s)",
            request.method, redactor.text(request.url.path), getattr(request.state, "request_id", "-"),
        )  # fmt: skip
        return _outcome_response(400, "structure", "the request body ended before its Content-Length")

    @app.exception_handler(DataError)
    async def _unstorable(request: Request, exc: DataError) -> Response:
        # A value from the request the database refuses to hold (PostgreSQL: a NUL character in text, a number out
        # of range): the client's input, so 400 — one info line naming only the error's class, never the value.
        log.info("unstorable value in %s %s: %s", request.method, request.url.path, type(exc.orig).__name__)
        return _outcome_response(400, "value", "the request holds a value that cannot be stored or searched "
                                 "(a NUL character, or a number out of range)")  # fmt: skip

    @app.exception_handler(OperationalError)
    async def _database_down(request: Request, exc: OperationalError) -> Response:
        # The database cannot be reached (or dropped the connection, or SQLite is locked): transient, so 503 with
        # Retry-After (RFC 9110 §15.6.4), one warning line naming only the error's class. SQLite reports a broken
        # statement as an OperationalError too: that one stays an unexpected error (500, logged as such).
        if timed_out(exc):
            # Cancelled past REGISTRY_STATEMENT_TIMEOUT_SECONDS: whether the request or the load made it slow, the
            # server stays up for the others; 503 + Retry-After (RFC 9110 §15.6.4), issue ``timeout``.
            log.warning("statement timed out in %s %s", request.method, request.url.path)
            response = _outcome_response(
                503, "timeout", "the database took longer than this registry allows for one request and the request "
                "was cancelled; narrow the search or retry later",
            )  # fmt: skip
            response.headers["Retry-After"] = "5"
            return response
        if not _transient(exc):
            raise exc
        log.warning("database unavailable in %s %s: %s", request.method, request.url.path, type(exc.orig).__name__)
        response = _outcome_response(503, "transient", "the database is unavailable; retry later")
        response.headers["Retry-After"] = "5"
        return response


def build_context(settings: Settings, clock: Callable[[], datetime] | None = None) -> AppContext:
    """Catalog, keys, database (migrated when ``auto_migrate``) and services — shared by the app and the CLI.
    ``clock`` is for tests that move time (validity windows); the default is the system clock. With a clock given,
    the age of cached client rows is measured on it too (so a test moves past the cache's TTL by moving the clock);
    otherwise on the monotonic clock."""
    try:
        catalog = load_catalog(settings.catalog_path)
    except InvalidCatalogError as exc:
        raise CatalogUnavailableError(f"catalog {settings.catalog_path} is invalid:\n{exc}") from None
    settings.var_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # the database and keys (docs/design.md §6)
    now = clock or utcnow
    timer = time.monotonic if clock is None else (lambda: now().timestamp())
    ctx = AppContext.build(settings, catalog, today=datetime.now(UTC).date(), clock=now, timer=timer)
    if settings.auto_migrate:
        migrate.upgrade(settings.effective_database_url, ctx.engine)
    elif migrate.current_revision(ctx.engine) != migrate.head_revision():
        raise SchemaOutOfDateError("the database schema is not up to date: run `hr-registry db upgrade`")
    return ctx


def _delivery_lifespan(
    ctx: AppContext, notify_worker: NotificationWorker | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The workers that run while the app serves: Subscription notifications (FHIR R4 subscription.html §2.46.7.1)
    and patient notifications to the gateway (docs/notifications.md)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if notify_worker is not None:
            notify_worker.start()
        try:
            async with _subscription_delivery(ctx):
                yield
        finally:
            await ctx.imaging.upstream.aclose()  # this event loop's connections to the PACS
            if notify_worker is not None:
                notify_worker.stop()

    return lifespan


@asynccontextmanager
async def _subscription_delivery(ctx: AppContext) -> AsyncIterator[None]:
    if not ctx.settings.subscription_delivery:
        yield
        return
    with httpx.Client(follow_redirects=False) as http:
        worker = DeliveryWorker(ctx.uow, http, ctx.clock, ctx.delivery, local_tz=ctx.local_tz,
                                base_url=ctx.settings.fhir_base_url)  # fmt: skip
        loop = DeliveryLoop(worker, ctx.settings.subscription_poll_seconds)
        ctx.subscriptions.queued = loop.wake.set
        loop.start()
        try:
            yield
        finally:
            ctx.subscriptions.queued = lambda: None
            loop.stop()


def create_app(settings: Settings | None = None, *, clock: Callable[[], datetime] | None = None) -> FastAPI:
    """Build the registry application. With no argument, settings come from ``REGISTRY_*`` variables."""
    settings = settings or Settings.from_env()
    ctx = build_context(settings, clock)
    limit_statements(ctx.engine, settings.statement_timeout_seconds)  # requests only, after the migrations
    install_log_masking(ctx.identity)
    worker = worker_for(settings, ctx.uow, ctx.clock)
    app = FastAPI(
        title="HR Registry",
        version="0.1.0",
        summary="Cross-hospital exam and lab result mutual-recognition registry (检查检验结果互认)",
        description="FHIR R4 registry, recognition check and CDS Hooks for 检查检验结果互认. "
        "FHIR endpoints speak `application/fhir+json`; every error is an OperationOutcome.",
        docs_url=None,  # registry.openapi serves /docs from the installed Swagger UI files (no CDN)
        redoc_url=None,  # ReDoc would load from a CDN: not offered
        lifespan=_delivery_lifespan(ctx, worker),
    )
    app.state.ctx = ctx
    _install_error_handlers(app)

    app.include_router(dicomweb.router)  # first: one frame after another, each matched against the routes before it
    app.include_router(health.router)
    app.include_router(operations.router)
    app.include_router(metadata.router)
    app.include_router(metadata.base_router)
    app.include_router(codesystems.router)
    app.include_router(conformance.router)
    app.include_router(auth_token.router)
    app.include_router(cds_routes.router)
    app.include_router(recognition.fhir_router)
    app.include_router(recognition.stats_router)
    app.include_router(recognition.admin_router)
    app.include_router(fhir_rest.router)
    openapi.install(app)
    pages.install(app)  # last: its /{area}/login routes must not shadow an API path
    missing = unguarded_routes(app)
    if missing:  # a route nobody decided about is a hole: refuse to start
        raise RuntimeError(f"routes without an access policy (registry/services/policy/routes.py): {missing}")
    app.add_middleware(HeadMiddleware)  # HEAD on /fhir and /dicomweb is the GET without its body
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(UnexpectedErrorMiddleware)  # what no handler took is a 500 that closes (the body limit's own
    # refusal is inside it)
    if ctx.replica is not None:  # a write's mark is kept before its answer goes out
        app.add_middleware(ReadYourWritesMiddleware, replica=ctx.replica)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(
        SessionMiddleware,  # the pages' sign-in only; API calls carry bearer tokens and ignore it
        secret_key=ctx.session_key.hex(),
        session_cookie="hr_session",
        max_age=settings.session_ttl_seconds,
        same_site="lax",
        https_only=settings.cookie_secure,
    )
    if settings.cors_origins:  # outside the routes and the policy: a preflight carries no token (Fetch standard)
        app.add_middleware(CORSPolicyMiddleware, origins=settings.cors_origins)
    app.add_middleware(MetricsMiddleware, metrics=ctx.metrics)  # outermost: every request, timed whole
    return app
