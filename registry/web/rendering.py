"""Rendering the pages: the Jinja2 environment, the headers every page carries, the redirect to sign-in."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from registry.auth import Principal
from registry.endpoint import ctx_of
from registry.web import display
from registry.web.i18n import translator
from registry.web.session import (
    csrf_token,
    language,
)

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html", "svg"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(
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

    def unit(code: str | None, text: str = "") -> str:
        """A unit as people write it: from its UCUM code when there is one, else the text the sender gave."""
        return display.unit_text(code, lang) if code else text

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
        unit=unit,
        flag=lambda code: display.flag_text(code, lang),
        flags=lambda codes: display.flags_text(codes, lang),
        body_part=lambda term: display.body_part(term, lang),
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


def to_sign_in(request: Request, area: str) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/{area}/login?{urlencode({'next': target})}", status_code=303)


def error_page(request: Request, area: str, principal: Principal | None, status: int, key: str) -> HTMLResponse:
    return render(request, "error.html", area, principal, status=status, message_key=key)


def safe_next(area: str, target: str | None) -> str:
    """Only a path inside the same area (no open redirect to another site)."""
    if target and target.startswith(f"/{area}") and not target.startswith("//") and "\\" not in target:
        return target
    return f"/{area}"
