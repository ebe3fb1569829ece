"""Health as orchestrators probe it: liveness without the database, readiness with it.

``GET /livez`` (and ``/healthz``, kept for existing probes) answers 200 while the process serves requests — it never
touches the database, so a database outage does not get the registry restarted. ``GET /readyz`` checks the database
with one round trip bounded by ``REGISTRY_READINESS_TIMEOUT_SECONDS``: 200 when ready, 503 with ``Retry-After``
otherwise, so a load balancer stops sending requests that would fail (every request that needs the database answers
503 meanwhile; RFC 9110 §15.6.4).
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from catalog import Kind
from registry.endpoint import ctx_of
from registry.store.db import ping

router = APIRouter(tags=["operations"])
log = logging.getLogger("registry")


def _live(request: Request) -> JSONResponse:
    catalog = ctx_of(request).catalog
    return JSONResponse(
        {
            "status": "ok",
            "catalog": {
                "edition": catalog.edition,
                "lab": len(catalog.of_kind(Kind.LAB)),
                "imaging": len(catalog.of_kind(Kind.IMAGING)),
            },
        }
    )


@router.get("/livez", summary="Liveness (no database)")
def livez(request: Request) -> JSONResponse:
    return _live(request)


@router.get("/healthz", summary="Liveness and catalog summary (as /livez)")
def healthz(request: Request) -> JSONResponse:
    return _live(request)


@router.get("/readyz", summary="Readiness: the database answers", responses={503: {"description": "not ready"}})
async def readyz(request: Request) -> JSONResponse:
    ctx = ctx_of(request)
    timeout = ctx.settings.readiness_timeout_seconds
    try:
        await asyncio.wait_for(run_in_threadpool(ping, ctx.engine), timeout)
    except Exception as exc:  # unreachable, refusing, or slower than the bound: not ready, whatever the cause
        reason = "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__
        log.warning("not ready: the database check %s", reason)
        return JSONResponse({"status": "unavailable", "database": reason}, status_code=503,
                            headers={"Retry-After": "5"})  # fmt: skip
    return JSONResponse({"status": "ok", "database": "ok"})
