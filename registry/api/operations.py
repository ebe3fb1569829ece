"""``GET /metrics``: the Prometheus text exposition format (``registry.metrics``), for admins only.

Prometheus scrapes with a bearer token (``authorization: {credentials_file: …}`` in its scrape config): give the
scraper an admin client of its own (``hr-registry clients add-admin prometheus``) and a token minted for it
(``hr-registry token prometheus --ttl …``), revoked with ``clients disable prometheus``. The metrics carry no
patient, client, organization or identifier (route templates, statuses, resource types and counts only); a scrape is
not audited, a refused one is (like every refusal).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from registry.endpoint import CurrentPrincipal, ctx_of
from registry.metrics import CONTENT_TYPE

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics (admins)",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}}, "description": "the "
                     "Prometheus text exposition format"}},
)  # fmt: skip
def metrics(request: Request, _principal: CurrentPrincipal) -> Response:
    return Response(ctx_of(request).metrics.render(), media_type=CONTENT_TYPE)
