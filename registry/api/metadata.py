"""``GET /fhir/metadata``: the CapabilityStatement (FHIR R4 §http.html#capabilities). Open to all.

``GET /fhir`` (and ``/fhir/``), the FHIR base the server prints, answers too: a browser (``Accept`` with
``text/html``) gets a short page that links the CapabilityStatement, the catalog and the API documentation; any other
client — a FHIR client sending ``application/fhir+json``, or nothing — gets the CapabilityStatement itself, with
``Content-Location: /fhir/metadata``. The statement rather than a redirect: FHIR defines no interaction on the base
URL for GET, and a client probing the base (as several do before reading ``metadata``) is best answered with what it
is looking for in one round trip, with no redirect to follow or to refuse."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Depends, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, Response

from registry.api.conditional import published_response
from registry.api.negotiation import require_json
from registry.context import AppContext

router = APIRouter(prefix="/fhir", tags=["FHIR"], dependencies=[Depends(require_json)])
base_router = APIRouter(prefix="/fhir", tags=["FHIR"])
"""The FHIR base itself: no ``require_json`` (a browser asks for HTML there)."""

_LINKS = (
    ("/fhir/metadata", "CapabilityStatement", "能力声明：本服务器支持的资源、检索参数和操作"),
    ("/fhir/CodeSystem/recognized-items", "Recognized items (CodeSystem)", "互认项目目录"),
    ("/fhir/CodeSystem/nonrecognition-reasons", "Non-recognition reasons (CodeSystem)", "不互认原因"),
    ("/cds-services", "CDS Hooks discovery", "CDS Hooks 服务"),
    ("/.well-known/smart-configuration", "SMART configuration", "SMART 配置"),
    ("/docs", "API documentation (OpenAPI)", "接口文档"),
)


def _wants_html(request: Request) -> bool:
    if request.query_params.get("_format"):
        return False
    accept = request.headers.get("accept", "").lower()
    return "text/html" in accept


def _base_page(base: str) -> str:
    items = "".join(
        f'<li><a href="{escape(path)}">{escape(en)}</a> — {escape(zh)} <code>{escape(base + path)}</code></li>'
        for path, en, zh in _LINKS
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">'
        "<title>FHIR R4 base · HR Registry</title></head><body>"
        "<main><h1>FHIR R4 base</h1>"
        f"<p>This is the FHIR R4 base of the registry (<code>{escape(base)}/fhir</code>): FHIR clients send their "
        "requests here with <code>Accept: application/fhir+json</code> and a bearer token from "
        "<code>/auth/token</code>. 这是平台的 FHIR R4 接口地址，供医院信息系统调用；患者和医生请使用 "
        '<a href="/portal">我的报告</a> 和 <a href="/clinician">医生开单</a> 页面。</p>'
        f'<ul data-testid="fhir-links">{items}</ul></main></body></html>'
    )


@base_router.get("", summary="The FHIR base: the CapabilityStatement (a browser gets a short page)")
def fhir_base(request: Request) -> Response:
    ctx: AppContext = request.app.state.ctx
    if _wants_html(request):
        return HTMLResponse(_base_page(ctx.settings.public_base_url.rstrip("/")), headers={"Vary": "Accept"})
    require_json(request)
    response = published_response(request, ctx.metadata)
    response.headers["Content-Location"] = "/fhir/metadata"
    response.headers["Vary"] = "Accept"
    return response


@router.get("/metadata", summary="CapabilityStatement", response_class=Response)
def metadata(request: Request) -> Response:
    ctx: AppContext = request.app.state.ctx
    return published_response(request, ctx.metadata)


@router.api_route("/metadata", methods=["POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
def metadata_is_read_only(request: Request) -> Response:
    raise StarletteHTTPException(405, f"{request.method} is not supported on /fhir/metadata")
