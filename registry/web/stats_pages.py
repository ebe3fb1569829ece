"""The statistics pages (``/stats``) for regional managers and hospitals."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from catalog import REASONS
from registry.auth import PrincipalKind
from registry.endpoint import audit_context, ctx_of
from registry.errors import BadRequestError, ForbiddenError
from registry.services.audit import AuditTrail
from registry.services.stats import Period, parse_period
from registry.web import charts
from registry.web.i18n import translator
from registry.web.rendering import render, to_sign_in
from registry.web.session import (
    language,
    signed_in,
)

router = APIRouter(include_in_schema=False)


def _stats_query(request: Request) -> tuple[Period, dict[str, str | None]]:
    q = request.query_params
    filters = {k: (q.get(k) or None) for k in ("hospital", "issuer", "item", "kind")}
    return parse_period(q.get("start"), q.get("end")), filters


@router.get("/stats", response_class=HTMLResponse)
async def stats(request: Request) -> Response:
    ctx = ctx_of(request)
    principal = signed_in(request, ctx, "stats")
    if principal is None:
        return to_sign_in(request, "stats")
    trail = AuditTrail(ctx.uow)
    audit = audit_context(request, principal, "operation", "statistics")
    try:
        period, filters = _stats_query(request)
        summary = await run_in_threadpool(
            trail.around, audit, ctx.clock(), lambda: ctx.statistics.summary(principal, period, **filters)
        )
        # the filters' choices come from the unfiltered figures — the same summary when nothing is filtered
        filtered = period != Period(None, None) or any(filters.values())
        everything = (
            await run_in_threadpool(ctx.statistics.summary, principal, Period(None, None)) if filtered else summary
        )
    except (BadRequestError, ForbiddenError) as exc:
        return render(request, "error.html", "stats", principal, status=exc.status, message=exc.diagnostics)
    t = translator(language(request))
    en = language(request) == "en"
    per_day = charts.stacked_columns(
        [(d["day"], (float(d["recognized"]), float(d["declined"]))) for d in summary["by_day"]],
        [("recognized", t["recognized"]), ("declined", t["declined"])],
    )
    rates = charts.bar_rows(
        [
            (
                h["name"] or h["hospital"] or "—",
                float(h["recognition_rate"] or 0),
                f"{(h['recognition_rate'] or 0) * 100:.1f}%",
            )
            for h in summary["by_hospital"]
            if h["recognition_rate"] is not None  # a hospital without decisions has no rate: no empty bar
        ],
        scale=1.0,
    )
    # each reason once, with its bar; a reason nobody gave is left out (no empty rows)
    given = [r for r in summary["declined_by_reason"] if r["count"]]
    names = {r.code: (r.display_en if en else r.display_zh) for r in REASONS}
    rows = charts.bar_rows([(names.get(r["code"], r["display"]), float(r["count"]), str(r["count"])) for r in given])
    reasons = list(zip(given, rows, strict=True))
    top = sorted((i for i in summary["by_item"] if i["recognized"]), key=lambda i: (-i["recognized"], i["item"] or ""))[
        :10
    ]
    top_rows = charts.bar_rows(
        [(i["name"] or i["item"] or "—", float(i["recognized"]), str(i["recognized"])) for i in top]
    )
    hospitals = sorted({(h["hospital"], h["name"]) for h in everything["by_hospital"] if h["hospital"]})
    issuers = sorted({(h["issuer"], h["name"]) for h in everything["by_issuer"] if h["issuer"]})
    items = sorted({(i["item"], i["name"]) for i in everything["by_item"] if i["item"]})
    csv_query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "lang" and v])
    return render(
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
        return to_sign_in(request, "stats")
    audit = audit_context(request, principal, "operation", "statistics")
    try:
        period, filters = _stats_query(request)
        text = AuditTrail(ctx.uow).around(
            audit, ctx.clock(), lambda: ctx.statistics.export_csv(principal, period, **filters)
        )
    except (BadRequestError, ForbiddenError) as exc:
        return render(request, "error.html", "stats", principal, status=exc.status, message=exc.diagnostics)
    return Response(
        "\ufeff" + text,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": 'attachment; filename="hr-recognition-statistics.csv"',
            "Cache-Control": "no-store",
        },
    )
