"""The image viewer of an imaging report: ``/portal/reports/{rid}/images`` (the patient) and
``/clinician/reports/{rtype}/{rid}/images`` (the clinician; ``POST`` with a reason opens it by break-glass, like the
report itself).

The page is the report's facts and conclusion beside an empty stage; its script (``static/viewer.js``, plain JS, no
library) fetches everything through the registry's DICOMweb gateway under the area's prefix (``/portal/dicomweb``,
``/clinician/dicomweb``) with ``fetch()`` — the series list (QIDO-RS), each series' first instance for a thumbnail of
the right shape, the series' metadata, the rendered frames — and draws the JPEGs on a ``<canvas>``. The page never
names the hospital's PACS, and the Content-Security-Policy stays the pages' own (``connect-src 'self'``; nothing is an
``<img>`` of another origin, or a ``blob:`` URL). A clinician who opened the report by break-glass sends the
break-glass label and reason (``registry.services.policy.purpose``) with every fetch, so each is decided and audited
as the override it is.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from registry.auth import Principal
from registry.services.policy.purpose import MAX_REASON, BreakGlass
from registry.services.portal import ReportView
from registry.web.clinician_pages import break_glass_form, open_result
from registry.web.i18n import translator
from registry.web.portal_pages import open_own_report, records_of
from registry.web.rendering import error_page, render
from registry.web.session import language

router = APIRouter(include_in_schema=False)

WINDOW_PRESETS = (("lung", -600, 1500), ("mediastinum", 40, 350), ("bone", 300, 2000))
"""CT window presets (name, centre/level, width in HU): 肺窗 W1500 L-600, 纵隔窗 W350 L40, 骨窗 W2000 L300 — within
the ranges radiology teaching gives (lung W1500–2000 / L-450 to -600, mediastinum W250–400 / L30–50, bone W1000–2500 /
L250–500); a hospital's workstation may use others, and the viewer's "默认" keeps the image's own window."""

VIEWER_WORDS = (
    "viewer_loading", "viewer_err_401", "viewer_err_403", "viewer_err_404", "viewer_err_502", "viewer_err_504",
    "viewer_err_other", "viewer_no_series", "viewer_images_n", "viewer_frame_of", "viewer_thumb_failed",
    "viewer_series_n",
)  # fmt: skip


def _viewer(
    request: Request, area: str, principal: Principal, report: ReportView, break_glass: BreakGlass | None
) -> Response:
    if report.study is None or not report.study.uid:
        return error_page(request, area, principal, 404, "no_images")
    t = translator(language(request))
    rtype = "" if area == "portal" else f"{report.type}/"
    return render(
        request,
        "viewer.html",
        area,
        principal,
        report=report,
        back=f"/{area}/reports/{rtype}{report.id}",
        dicomweb=f"/{area}/dicomweb",
        break_glass=break_glass,
        presets=WINDOW_PRESETS,
        words={key: t[key] for key in VIEWER_WORDS},
        records_of=records_of(request, principal) if area == "portal" else None,
    )


@router.get("/portal/reports/{rid}/images", response_class=HTMLResponse)
def portal_images(rid: str, request: Request) -> Response:
    """The images of one of the patient's own imaging reports."""
    return open_own_report(request, rid, lambda r, p, report: _viewer(r, "portal", p, report, None))


def _clinician_viewer(
    request: Request, principal: Principal, report: ReportView, break_glass: BreakGlass | None
) -> Response:
    return _viewer(request, "clinician", principal, report, break_glass)


@router.get("/clinician/reports/{rtype}/{rid}/images", response_class=HTMLResponse)
def clinician_images(rtype: str, rid: str, request: Request) -> Response:
    """The images of a report (or study) a card links to, within the clinician's care context."""
    return open_result(request, rtype, rid, None, _clinician_viewer)


@router.post("/clinician/reports/{rtype}/{rid}/images", response_class=HTMLResponse)
def clinician_images_break_glass(
    rtype: str,
    rid: str,
    request: Request,
    reason: Annotated[str, Form(max_length=MAX_REASON)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """The same images opened by break-glass: the reason is audited with the page and sent with every image fetch."""
    asked = break_glass_form(request, reason, csrf)
    return asked if isinstance(asked, Response) else open_result(request, rtype, rid, asked, _clinician_viewer)
