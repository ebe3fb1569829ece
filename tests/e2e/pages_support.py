"""What the browser tests share: ``hr-registry serve`` with the demo region as ``./scripts/serve`` runs it (optionally
with the demo's local PACS, ``hr-registry demo pacs``), Debian's Chromium through Playwright, signing in, screenshots
to build/screenshots/ (``./scripts/refresh_screenshots`` copies them to docs/screenshots/ for the README)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, free_port, stop_process, wait_until_healthy
from tests.e2e.support import client_token

CHROMIUM = os.environ.get("HR_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("HR_SCREENSHOTS", ROOT / "build" / "screenshots"))
FULL_NATIONAL_ID = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")
EXE = shutil.which("hr-registry", path=str(Path(sys.executable).parent)) or "hr-registry"


def need_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    message = f"Chromium not found at {CHROMIUM} (Debian package chromium; ./scripts/test installs it)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}: CI must have it")
    pytest.skip(message)


class Demo:
    def __init__(self, base: str, var: Path, gateway: Any = None) -> None:
        self.base = base
        self.var = var
        self.gateway = gateway
        self.secrets: dict[str, str] = json.loads((var / "demo-credentials.json").read_text())

    def token(self, client_id: str) -> str:
        return client_token(self.base, client_id, self.secrets[client_id])

    def request(self, client_id: str, path: str, **params: Any) -> httpx.Response:
        return httpx.get(
            f"{self.base}{path}",
            params=params,
            headers={"Authorization": f"Bearer {self.token(client_id)}"},
            timeout=30,
        )

    def get(self, client_id: str, path: str, **params: Any) -> Any:
        r = self.request(client_id, path, **params)
        r.raise_for_status()
        return r.json()

    def search_all(self, client_id: str, path: str, **params: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        doc = self.get(client_id, path, _count="200", **params)
        while True:
            out += [e["resource"] for e in doc.get("entry", []) if e.get("search", {}).get("mode", "match") == "match"]
            nxt = next((lk["url"] for lk in doc.get("link", []) if lk["relation"] == "next"), None)
            if nxt is None:
                return out
            r = httpx.get(nxt, headers={"Authorization": f"Bearer {self.token(client_id)}"}, timeout=30)
            doc = r.json()


@contextmanager
def demo_server(var: Path, env: dict[str, str]) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``hr-registry serve`` on a free port with the demo region (its first start loads it), settings from ``env``."""
    port = free_port()
    log = var / "serve.log"
    with log.open("ab") as fh:
        proc = subprocess.Popen(  # noqa: S603 - fixed argv
            [EXE, "serve", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(proc, base, log, timeout=240)  # the first start loads the demo region
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield base, proc
    finally:
        stop_process(proc)


@contextmanager
def demo_pacs(var: Path, timeout: float = 240) -> Iterator[Path]:
    """``hr-registry demo pacs`` as ``./scripts/serve`` starts it: yields the PACS list file (for
    ``REGISTRY_DICOMWEB_ENDPOINTS``) once the demo's images are stored."""
    endpoints = var / "dicomweb-endpoints.json"
    log = var / "pacs.log"
    with log.open("ab") as fh:
        proc = subprocess.Popen(  # noqa: S603 - fixed argv
            [EXE, "demo", "pacs", "--port", "0", "--endpoints-file", str(endpoints)],
            cwd=ROOT, env={**os.environ, "REGISTRY_VAR_DIR": str(var)}, stdout=fh, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while "local PACS: " not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the demo PACS did not come up:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)
        yield endpoints
    finally:
        stop_process(proc)


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


@contextmanager
def new_page(browser: Any, base: str, **options: Any) -> Iterator[Any]:
    """A page of a fresh context; at the end, no error may have been logged (a test clears ``hr_errors`` when it
    provokes one on purpose)."""
    context = browser.new_context(base_url=base, **{"viewport": {"width": 1200, "height": 900}, "locale": "zh-CN",
                                                    **options})  # fmt: skip
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    p.hr_errors = errors
    try:
        yield p
    finally:
        context.close()
    assert not errors, f"the page logged errors: {errors}"


def sign_in(page: Any, demo: Demo, area: str, client_id: str) -> None:
    page.goto(f"/{area}")
    assert f"/{area}/login" in page.url
    page.get_by_label(re.compile("账号")).fill(client_id)
    page.get_by_label(re.compile("密码")).fill(demo.secrets[client_id])
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(re.compile(rf"/{area}(\?.*)?$"))


def no_full_national_id(page: Any) -> None:
    html = page.content()
    assert not FULL_NATIONAL_ID.search(html), "a page showed a full national identifier"


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def pixels(png: bytes) -> tuple[int, float]:
    """(distinct grey levels, standard deviation) of a screenshot: real image content has many levels and spread, a
    blank or single-colour one neither."""
    from PIL import Image, ImageStat

    grey = Image.open(BytesIO(png)).convert("L")
    return len(grey.getcolors(256) or []), float(ImageStat.Stat(grey).stddev[0])


AXE = ROOT / "tests" / "e2e" / "a11y" / "node_modules" / "axe-core" / "axe.min.js"
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def axe_violations(page: Any) -> list[str]:
    """Run axe-core on the page as it is now; one line per WCAG 2.1 A/AA rule it violates."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG)
    assert len(result["passes"]) > 10  # the audit really ran
    return [f"{page.url}: {v['id']} ({v['impact']}) at {v['nodes'][0]['target']}" for v in result["violations"]]
