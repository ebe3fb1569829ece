"""The patient's portal page for the registry benchmark: a patient principal for one synthetic person and a page
session signed in the way a browser signs in (GET the form, POST it with its CSRF token), as a ``Cookie`` header for
the load generators."""

from __future__ import annotations

import re
from typing import Any

import httpx

PORTAL = "/portal"


def portal_session(settings: Any, base: str, system: str, nid: str) -> dict[str, str]:
    """Headers that carry a signed-in patient's session for ``nid``'s portal."""
    from registry.app import build_context
    from registry.auth import PrincipalKind

    ctx = build_context(settings)
    try:
        key = ctx.identity.master_key(system, nid)
        secret = ctx.principals.add(PrincipalKind.PATIENT, "bench-patient", "bench patient", patient_key=key).secret
    finally:
        ctx.engine.dispose()
    with httpx.Client(base_url=base, follow_redirects=False, timeout=30) as client:
        form = client.get(f"{PORTAL}/login")
        match = re.search(r'name="csrf" value="([^"]+)"', form.text)
        if form.status_code != 200 or match is None:
            raise RuntimeError(f"the portal's sign-in form: {form.status_code}")
        answer = client.post(f"{PORTAL}/login", data={"account": "bench-patient", "secret": secret,
                                                      "csrf": match.group(1)})  # fmt: skip
        cookie = client.cookies.get("hr_session")
        if answer.status_code != 303 or not cookie:
            raise RuntimeError(f"the portal's sign-in: {answer.status_code}")
    return {"Cookie": f"hr_session={cookie}", "Accept": "text/html"}
