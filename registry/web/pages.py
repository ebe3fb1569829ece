"""The web pages: patient portal (``/portal``), clinician order screen (``/clinician``) and statistics (``/stats``).

Server-rendered with Jinja2; every page reads through the same access-checked, audited services as the FHIR API (a
patient's portal is a patient principal's search; the order screen's script calls the public FHIR and CDS Hooks
endpoints with a bearer token). Forms carry a CSRF token; sign-in is per area (see ``session``).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles

from catalog import REASONS
from registry.auth import Principal, PrincipalKind
from registry.context import AppContext
from registry.endpoint import audit_context, ctx_of
from registry.errors import BadRequestError, ForbiddenError, NotFoundError
from registry.ratelimit import RateLimiter
from registry.services.audit import AuditTrail, audit_row
from registry.services.portal import ReportView
from registry.services.stats import Period, parse_period
from registry.web import charts
from registry.web.i18n import describe_access, translator
from registry.web.session import (
    AREAS,
    ClientCredentialsSignIn,
    IdentityProvider,
    SignInError,
    csrf_ok,
    csrf_token,
    language,
    sign_in,
    sign_out,
    signed_in,
)

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
SIGN_IN_TITLES = {"portal": "sign_in_portal", "clinician": "sign_in_clinician", "stats": "sign_in_stats"}

router = APIRouter(include_in_schema=False)
templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html", "svg"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def install(app: FastAPI) -> None:
    """Serve the pages and their assets on ``app`` (after the API routers: ``/{area}/login`` must not shadow them)."""
    app.mount("/assets", StaticFiles(directory=STATIC_DIR), name="assets")
    app.include_router(router)
    app.state.sign_in_limiter = RateLimiter(0.2, 10)  # per account: 10 attempts at once, then one every 5 s


def _provider(ctx: AppContext) -> IdentityProvider:
    return ClientCredentialsSignIn(ctx.principals)


# ---------------------------------------------------------------------------------------------------- rendering
def _render(
    request: Request, name: str, area: str, principal: Principal | None, status: int = 200, **values: Any
) -> HTMLResponse:
    ctx = ctx_of(request)
    lang = language(request)
    tz = ctx.local_tz

    def day(moment: datetime | None) -> str:
        return moment.astimezone(tz).strftime("%Y-%m-%d") if moment else "—"

    def minute(moment: datetime | None) -> str:
        return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M") if moment else "—"

    def item_name(item: Any) -> str:
        if item is None:
            return ""
        return str(item.name_en if lang == "en" else item.name_zh)

    def switch_lang() -> str:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
        params.append(("lang", "en" if lang == "zh" else "zh"))
        return f"{request.url.path}?{urlencode(params)}"

    html = templates.get_template(name).render(
        request=request,
        t=translator(lang),
        lang=lang,
        area=area,
        principal=principal,
        csrf=csrf_token(request),
        day=day,
        minute=minute,
        item_name=item_name,
        switch_lang=switch_lang(),
        now=ctx.clock(),
        **values,
    )
    response = HTMLResponse(html, status_code=status)
    response.headers["Cache-Control"] = "no-store"  # patient data: never kept by a shared cache or the back button
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'"
    )
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def _to_sign_in(request: Request, area: str) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/{area}/login?{urlencode({'next': target})}", status_code=303)


def _error(request: Request, area: str, principal: Principal | None, status: int, key: str) -> HTMLResponse:
    return _render(request, "error.html", area, principal, status=status, message_key=key)


def _safe_next(area: str, target: str | None) -> str:
    """Only a path inside the same area (no open redirect to another site)."""
    if target and target.startswith(f"/{area}") and not target.startswith("//") and "\\" not in target:
        return target
    return f"/{area}"


# ---------------------------------------------------------------------------------------------------- sign-in
@router.get("/{area}/login", response_class=HTMLResponse)
def login_page(area: str, request: Request, next: str | None = None) -> Response:
    if area not in AREAS:
        raise NotFoundError(f"no such page: /{area}/login")
    return _render(request, "login.html", area, None, title_key=SIGN_IN_TITLES[area], next=_safe_next(area, next))


@router.post("/{area}/login", response_class=HTMLResponse)
def login(
    area: str,
    request: Request,
    account: Annotated[str, Form(max_length=100)],
    secret: Annotated[str, Form(max_length=200)],
    csrf: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    if area not in AREAS:
        raise NotFoundError(f"no such page: /{area}/login")
    ctx = ctx_of(request)
    values = {"title_key": SIGN_IN_TITLES[area], "next": _safe_next(area, next), "account": account}
    if not csrf_ok(request, csrf):
        return _render(request, "login.html", area, None, status=400, error_key="csrf", **values)
    limiter: RateLimiter = request.app.state.sign_in_limiter
    if limiter.acquire(f"{area}:{account}"):
        return _render(request, "login.html", area, None, status=429, error_key="too_many", **values)
    audit = audit_context(request, None, "operation", None, None)
    try:
        principal = _provider(ctx).authenticate(account, secret)
        if principal.kind not in AREAS[area]:
            raise SignInError("wrong_kind")
    except SignInError as exc:
        AuditTrail(ctx.uow).record(
            [
                audit_row(
                    audit, now=ctx.clock(), status=401, detail=f"page sign-in /{area}: {exc.key}", interaction="login"
                )
            ]
        )
        return _render(request, "login.html", area, None, status=401, error_key=exc.key, **values)
    audit = audit_context(request, principal, "operation", None, None)
    AuditTrail(ctx.uow).record(
        [audit_row(audit, now=ctx.clock(), status=200, detail=f"page sign-in /{area}", interaction="login")]
    )
    sign_in(request, area, principal, ctx.settings.session_ttl_seconds)
    return RedirectResponse(_safe_next(area, next), status_code=303)


@router.post("/{area}/logout")
def logout(area: str, request: Request, csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
    if area not in AREAS:
        raise NotFoundError(f"no such page: /{area}/logout")
    if csrf_ok(request, csrf):
        sign_out(request, area)
    return RedirectResponse(f"/{area}/login", status_code=303)


# ---------------------------------------------------------------------------------------------------- portal
def _options(reports: list[ReportView]) -> tuple[list[tuple[str, str]], list[tuple[str, Any]]]:
    hospitals = sorted({(r.org_id or "", r.org_name) for r in reports}, key=lambda h: h[1])
    items = {r.item.id: r.item for r in reports if r.item is not None}
    return hospitals, sorted(items.items(), key=lambda kv: kv[0])


@router.get("/portal", response_class=HTMLResponse)
def portal(request: Request, hospital: str = "", kind: str = "", item: str = "") -> Response:
    ctx = ctx_of(request)
    principal = signed_in(request, ctx, "portal")
    if principal is None:
        return _to_sign_in(request, "portal")
    audit = audit_context(request, principal, "search-type", "DiagnosticReport")
    every = ctx.portal.reports(principal, audit)
    card = ctx.portal.patient(principal, audit_context(request, principal, "search-type", "Patient"))
    shown = [
        r
        for r in every
        if (not hospital or r.org_id == hospital)
        and (not kind or r.kind.value == kind)
        and (not item or (r.item is not None and r.item.id == item))
    ]
    hospitals, items = _options(every)
    return _render(
        request,
        "portal_reports.html",
        "portal",
        principal,
        card=card,
        reports=shown,
        total=len(every),
        hospitals=hospitals,
        items=items,
        trend_items=ctx.portal.lab_items(every),
        hospital_count=len({r.org_id for r in every}),
        filters={"hospital": hospital, "kind": kind, "item": item},
    )


@router.get("/portal/reports/{rid}", response_class=HTMLResponse)
def portal_report(rid: str, request: Request) -> Response:
    ctx = ctx_of(request)
    principal = signed_in(request, ctx, "portal")
    if principal is None:
        return _to_sign_in(request, "portal")
    audit = audit_context(request, principal, "search-type", "DiagnosticReport")
    try:
        report = ctx.portal.report(principal, audit, rid)
    except NotFoundError:
        return _error(request, "portal", principal, 404, "not_found")
    return _render(request, "report.html", "portal", principal, report=report, back="/portal")


@router.get("/portal/trends/{item_id}", response_class=HTMLResponse)
def portal_trend(item_id: str, request: Request) -> Response:
    ctx = ctx_of(request)
    principal = signed_in(request, ctx, "portal")
    if principal is None:
        return _to_sign_in(request, "portal")
    audit = audit_context(request, principal, "search-type", "Observation")
    try:
        trend = ctx.portal.trend(principal, audit, item_id)
    except NotFoundError:
        return _error(request, "portal", principal, 404, "not_found")
    chart = charts.trend_chart(
        [
            (
                p.when,
                p.value,
                p.org_name,
                f"{p.when.astimezone(ctx.local_tz):%Y-%m-%d} {p.org_name}: {p.text}",
                bool(set(p.flags) & {"H", "HH", "L", "LL", "A", "AA"}),
            )
            for p in trend.points
        ],
        trend.low,
        trend.high,
    )
    return _render(request, "portal_trend.html", "portal", principal, trend=trend, chart=chart)


@router.get("/portal/access", response_class=HTMLResponse)
def portal_access(request: Request) -> Response:
    ctx = ctx_of(request)
    principal = signed_in(request, ctx, "portal")
    if principal is None:
        return _to_sign_in(request, "portal")
    lang = language(request)
    return _render(
        request,
        "portal_access.html",
        "portal",
        principal,
        rows=ctx.portal.access_log(principal),
        describe=lambda row: describe_access(row.interaction, row.resource_type, lang),
    )


# ---------------------------------------------------------------------------------------------------- clinician
@router.get("/clinician", response_class=HTMLResponse)
def clinician(request: Request) -> Response:
    ctx = ctx_of(request)
    principal = signed_in(request, ctx, "clinician")
    if principal is None:
        return _to_sign_in(request, "clinician")
    reasons = [
        {"code": r.code, "display": r.display_zh, "counts": r.counts_as_nonrecognition, "comment": r.requires_comment}
        for r in REASONS
    ]
    return _render(request, "clinician.html", "clinician", principal, reasons=reasons)


@router.post("/clinician/token")
def clinician_token(request: Request) -> Response:
    """A short-lived bearer token for the order screen's script (like an EHR launch hands one to an embedded app);
    needs the signed-in session and its CSRF token in ``X-CSRF-Token``."""
    ctx = ctx_of(request)
    principal = signed_in(request, ctx, "clinician")
    if principal is None:
        return JSONResponse({"error": "session_expired"}, status_code=401)
    if not csrf_ok(request, request.headers.get("x-csrf-token")):
        return JSONResponse({"error": "csrf"}, status_code=403)
    issued = ctx.principals.token(principal)
    return JSONResponse(
        {"access_token": issued.access_token, "expires_in": issued.expires_in, "org": principal.org_id},
        headers={"Cache-Control": "no-store"},
    )


@router.get("/clinician/reports/{rtype}/{rid}", response_class=HTMLResponse)
def clinician_report(rtype: str, rid: str, request: Request) -> Response:
    """The report a card links to, read as the clinician (care context of their hospital, audited)."""
    ctx = ctx_of(request)
    principal = signed_in(request, ctx, "clinician")
    if principal is None:
        return _to_sign_in(request, "clinician")
    audit = audit_context(request, principal, "search-type", rtype)
    try:
        report = ctx.portal.result(principal, audit, rtype, rid)
    except NotFoundError:
        return _error(request, "clinician", principal, 404, "not_found")
    except ForbiddenError:
        return _error(request, "clinician", principal, 403, "forbidden")
    return _render(request, "report.html", "clinician", principal, report=report, back="/clinician")


# ---------------------------------------------------------------------------------------------------- statistics
def _stats_query(request: Request) -> tuple[Period, dict[str, str | None]]:
    q = request.query_params
    filters = {k: (q.get(k) or None) for k in ("hospital", "issuer", "item", "kind")}
    return parse_period(q.get("start"), q.get("end")), filters


@router.get("/stats", response_class=HTMLResponse)
async def stats(request: Request) -> Response:
    ctx = ctx_of(request)
    principal = signed_in(request, ctx, "stats")
    if principal is None:
        return _to_sign_in(request, "stats")
    try:
        period, filters = _stats_query(request)
        summary = await run_in_threadpool(ctx.statistics.summary, principal, period, **filters)
        # the filters' choices come from the unfiltered figures — the same summary when nothing is filtered
        filtered = period != Period(None, None) or any(filters.values())
        everything = (
            await run_in_threadpool(ctx.statistics.summary, principal, Period(None, None)) if filtered else summary
        )
    except (BadRequestError, ForbiddenError) as exc:
        return _render(request, "error.html", "stats", principal, status=400, message=exc.diagnostics)
    per_day = charts.column_chart([(d["day"], float(d["recognized"])) for d in summary["by_day"]])
    rates = charts.bar_rows(
        [
            (
                h["name"] or h["hospital"] or "—",
                float(h["recognition_rate"] or 0),
                f"{(h['recognition_rate'] or 0) * 100:.1f}%",
            )
            for h in summary["by_hospital"]
        ],
        scale=1.0,
    )
    reasons = charts.bar_rows(
        [(f"{r['code']} {r['display']}", float(r["count"]), str(r["count"])) for r in summary["declined_by_reason"]]
    )
    top = sorted(summary["by_item"], key=lambda i: (-i["recognized"], i["item"] or ""))[:10]
    top_rows = charts.bar_rows(
        [(i["name"] or i["item"] or "—", float(i["recognized"]), str(i["recognized"])) for i in top]
    )
    hospitals = sorted({(h["hospital"], h["name"]) for h in everything["by_hospital"] if h["hospital"]})
    issuers = sorted({(h["issuer"], h["name"]) for h in everything["by_issuer"] if h["issuer"]})
    items = sorted({(i["item"], i["name"]) for i in everything["by_item"] if i["item"]})
    csv_query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "lang" and v])
    return _render(
        request,
        "stats.html",
        "stats",
        principal,
        s=summary,
        per_day=per_day,
        rates=rates,
        reasons=reasons,
        top_rows=top_rows,
        reason_counted={r.code: r.counts_as_nonrecognition for r in REASONS},
        hospitals=hospitals,
        issuers=issuers,
        items=items,
        csv_query=csv_query,
        filters={k: request.query_params.get(k, "") for k in ("start", "end", "hospital", "issuer", "item", "kind")},
        own_hospital=principal.org_id if principal.kind is PrincipalKind.HOSPITAL else None,
    )


@router.get("/stats/export.csv")
def stats_csv(request: Request) -> Response:
    """The CSV of what the page shows (the same export as ``/stats/api/export.csv``, for the signed-in manager)."""
    ctx = ctx_of(request)
    principal = signed_in(request, ctx, "stats")
    if principal is None:
        return _to_sign_in(request, "stats")
    period, filters = _stats_query(request)
    text = ctx.statistics.export_csv(principal, period, **filters)
    return Response(
        "\ufeff" + text,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="hr-recognition-statistics.csv"',
            "Cache-Control": "no-store",
        },
    )


@router.get("/", include_in_schema=False)
def home(request: Request) -> Response:
    return _render(request, "home.html", "", None)
