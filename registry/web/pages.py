"""The web pages: patient portal (``/portal``), clinician order screen (``/clinician``) and statistics (``/stats``).

Server-rendered with Jinja2; every page reads through the same access-checked, audited services as the FHIR API (a
patient's portal is a patient principal's search; the order screen's script calls the public FHIR and CDS Hooks
endpoints with a bearer token). Forms carry a CSRF token; sign-in is per area (see ``session``).
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from registry.web import (
    clinician_pages,
    consent_pages,
    dicomweb_pages,
    notification_pages,
    portal_pages,
    signin,
    stats_pages,
    viewer_pages,
)
from registry.web.rendering import STATIC_DIR


def install(app: FastAPI) -> None:
    """Serve the pages and their assets on ``app`` (after the API routers: ``/{area}/login`` must not shadow them)."""
    app.mount("/assets", StaticFiles(directory=STATIC_DIR), name="assets")
    app.include_router(dicomweb_pages.portal_router)  # the viewer's images, before the pages' own routes
    app.include_router(dicomweb_pages.clinician_router)
    for module in (
        portal_pages,
        notification_pages,
        consent_pages,
        clinician_pages,
        viewer_pages,
        stats_pages,
        signin,
    ):  # /{area}/login last
        app.include_router(module.router)
