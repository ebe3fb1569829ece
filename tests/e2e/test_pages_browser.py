"""The web pages in a real browser: Debian's headless Chromium driven by Playwright, against ``hr-registry serve``
started as the README starts it (demo data loaded, demo credentials in var/demo-credentials.json).

The numbers the pages show are checked against the public API (FHIR searches, /stats/api/summary), not against
constants. Each test writes a screenshot of the page it exercises to build/screenshots/ (ignored by git, so a test
run leaves the clone clean); ``./scripts/refresh_screenshots`` copies them to docs/screenshots/ for the README.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from registry.services.notifications.local_gateway import LocalGateway
from tests.e2e.pages_support import (
    AXE,
    Demo,
    axe_violations,
    chromium,
    demo_server,
    need_chromium,
    new_page,
    no_full_national_id,
    shot,
    sign_in,
)

playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency (./scripts/test)")
expect = playwright_sync.expect


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """``hr-registry serve`` with the demo region on an embedded SQLite file, as ./scripts/serve runs it (without the
    local PACS: the viewer then says the images are not reachable; tests/e2e/test_viewer_browser.py has it)."""
    need_chromium()
    var = tmp_path_factory.mktemp("pages-var")
    gateway = LocalGateway(var / "notify-gateway.jsonl").start()  # the portal's notifications are really delivered
    env = {"REGISTRY_VAR_DIR": str(var), "REGISTRY_RATE_LIMIT_PER_SECOND": "0",
           "REGISTRY_NOTIFY_GATEWAY_URL": gateway.url, "REGISTRY_NOTIFY_POLL_SECONDS": "0.2"}  # fmt: skip
    try:
        with demo_server(var, env) as (base, _proc):
            yield Demo(base, var, gateway)
    finally:
        gateway.stop()


@pytest.fixture(scope="module")
def browser(demo: Demo) -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Any, demo: Demo) -> Iterator[Any]:
    with new_page(browser, demo.base) as p:
        yield p


# ---------------------------------------------------------------------------------------------------- portal
def test_patient_sees_reports_from_two_hospitals_and_a_trend_with_every_value(page: Any, demo: Demo) -> None:
    sign_in(page, demo, "portal", "demo-patient")
    expected = demo.search_all("demo-patient", "/fhir/DiagnosticReport")
    rows = page.get_by_test_id("report-row")
    assert rows.count() == len(expected) > 0
    hospitals = {rows.nth(i).get_attribute("data-hospital") for i in range(rows.count())}
    assert len(hospitals) >= 2, hospitals
    assert page.get_by_test_id("national-id").inner_text().count("*") >= 8
    # the header says whose records these are: the name on the card, not the account's label
    assert page.get_by_test_id("who").inner_text() == page.get_by_test_id("patient-name").inner_text() != "演示患者"
    no_full_national_id(page)
    shot(page, "portal")

    # filter by one hospital: only its reports remain
    one = sorted(h for h in hospitals if h)[0]
    page.get_by_label("医院").select_option(one)
    page.get_by_role("button", name="筛选").click()
    shown = page.get_by_test_id("report-row")
    assert 0 < shown.count() < len(expected)
    assert all(shown.nth(i).get_attribute("data-hospital") == one for i in range(shown.count()))

    # the trend of the blood count's white cells: one point per value the patient has, across hospitals
    page.goto("/portal")
    link = page.get_by_test_id("trend-link").first
    item_id = link.get_attribute("href").rsplit("/", 1)[1]
    link.click()
    codes = demo.get("demo-patient", "/fhir/CodeSystem/recognized-items")
    concept = next(c for c in codes["concept"] if c["code"] == item_id)
    loinc = next(p["valueCoding"]["code"] for p in concept["property"] if p["code"] == "code")
    values = [
        o
        for o in demo.search_all("demo-patient", "/fhir/Observation", code=f"http://loinc.org|{loinc}")
        if "valueQuantity" in o and o["status"] not in ("entered-in-error", "cancelled")
    ]
    assert len(values) >= 2
    assert page.get_by_test_id("trend-point").count() == len(values)
    assert page.get_by_test_id("point-count").inner_text() == str(len(values))
    assert page.get_by_test_id("reference-band").count() == 1
    # a date under every point, and the unit as people write it
    dates = [page.get_by_test_id("point-date").nth(i).text_content() for i in range(len(values))]
    assert page.get_by_test_id("point-date").count() == len(values) and re.fullmatch(r"\d{4}-\d\d-\d\d", dates[0])
    assert all(re.fullmatch(r"(\d{4}-)?\d\d-\d\d", d) for d in dates), dates
    assert page.get_by_test_id("trend-unit").inner_text() == "10⁹/L"
    no_full_national_id(page)
    shot(page, "portal-trend")

    # a report: values with units, ranges and flags
    page.goto("/portal")
    page.get_by_test_id("report-row").first.get_by_role("link").click()
    assert page.url.split("/portal/reports/")[1]
    assert page.get_by_test_id("values").locator("tbody tr").count() >= 1
    units = {page.get_by_test_id("unit").nth(i).inner_text() for i in range(page.get_by_test_id("unit").count())}
    assert not any("*" in u or u == "umol/L" for u in units), units
    flags = page.get_by_test_id("flag")
    words = {flags.nth(i).inner_text() for i in range(flags.count())}
    assert words and words <= {"↑ 偏高", "↓ 偏低", "正常", "异常"}, words  # never a bare H / L / N
    no_full_national_id(page)
    shot(page, "portal-report")

    # an imaging report: the study and the registry's viewer (never a link to the hospital's own PACS)
    page.goto("/portal?kind=imaging")
    page.get_by_test_id("report-row").first.get_by_role("link").click()
    assert "CT" in page.get_by_test_id("study").inner_text() or "MR" in page.get_by_test_id("study").inner_text()
    part = page.get_by_test_id("body-part").inner_text()
    assert part in {"胸部", "颅脑", "腹部"}, part  # in Chinese, never "Chest"
    rid = page.url.split("/portal/reports/")[1]
    assert page.get_by_test_id("viewer").get_attribute("href") == f"/portal/reports/{rid}/images"
    assert "example.cn/dicom-web" not in page.content()
    shot(page, "portal-imaging")
    # this registry has no PACS configured: the viewer says so, in words, and shows no broken image
    page.get_by_test_id("viewer").click()
    expect(page.get_by_test_id("image-viewer")).to_have_attribute("data-error", "502", timeout=20_000)
    assert "影像暂时无法调阅" in page.get_by_test_id("viewer-status").inner_text()
    assert page.locator("img").count() == 0
    page.hr_errors.clear()  # the browser logs the 502 it was meant to get


def test_patient_cannot_open_another_patients_report_by_changing_the_url(page: Any, demo: Demo) -> None:
    mine = {r["id"] for r in demo.search_all("demo-patient", "/fhir/DiagnosticReport")}
    others = [
        r
        for r in demo.get("demo-admin", "/fhir/DiagnosticReport", _count="50")["entry"]
        if r["resource"]["id"] not in mine
    ]
    other = others[0]["resource"]
    sign_in(page, demo, "portal", "demo-patient")
    response = page.goto(f"/portal/reports/{other['id']}")
    assert response.status == 404
    page.hr_errors.clear()  # the browser logs the 404 it was meant to get
    assert other.get("conclusion", "\x00") not in page.content()
    assert page.get_by_test_id("values").count() == 0
    # and the registry's API says the same to the patient's token
    r = httpx.get(
        f"{demo.base}/fhir/DiagnosticReport/{other['id']}",
        headers={"Authorization": f"Bearer {demo.token('demo-patient')}"},
        timeout=10,
    )
    assert r.status_code in (403, 404)
    # a session cookie cannot be used across areas: the patient is not signed in to the order screen
    page.goto("/clinician")
    assert "/clinician/login" in page.url


def test_a_forged_form_without_the_csrf_token_is_refused(demo: Demo) -> None:
    r = httpx.post(
        f"{demo.base}/portal/login",
        data={"account": "demo-patient", "secret": demo.secrets["demo-patient"]},
        timeout=10,
    )
    assert r.status_code == 400
    assert "hr_session" not in r.headers.get("set-cookie", "") or "areas" not in r.text


def test_patient_turns_on_sms_and_sees_the_notification_of_a_correction(page: Any, demo: Demo) -> None:
    """Settings per channel and language saved from the page; a correction hospital A then pushes reaches the local
    gateway, and the page lists exactly what it received."""
    sign_in(page, demo, "portal", "demo-patient")
    page.get_by_test_id("notify-link").click()
    page.wait_for_url(re.compile(r"/portal/notifications$"))
    assert page.get_by_label("短信").is_checked() is False
    page.get_by_label("短信").check()
    page.get_by_label("提醒语言").select_option("zh")
    page.get_by_test_id("notify-save").click()
    expect(page.get_by_test_id("notify-saved")).to_be_visible()
    page.goto("/portal/notifications")
    assert page.get_by_label("短信").is_checked() and not page.get_by_label("手机应用推送").is_checked()

    mine = demo.search_all("demo-patient", "/fhir/DiagnosticReport", performer="Organization/hosp-a", status="final")
    report = next(r for r in mine if r.get("category"))
    corrected = {**report, "status": "corrected"}
    r = httpx.put(
        f"{demo.base}/fhir/DiagnosticReport/{report['id']}",
        content=json.dumps(corrected),
        headers={"Authorization": f"Bearer {demo.token('hosp-a-system')}", "Content-Type": "application/fhir+json"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    deadline = 60.0
    while deadline and not [m for m in demo.gateway.received() if m["recipient"] == "demo-patient"]:
        page.wait_for_timeout(250)
        deadline -= 0.25
    (message,) = [m for m in demo.gateway.received() if m["recipient"] == "demo-patient"]
    assert message["channel"] == "sms" and "已更正" in message["text"]
    page.goto("/portal/notifications")
    rows = page.get_by_test_id("notify-sent").locator("tbody tr")
    assert rows.count() == 1
    assert message["text"] in rows.first.inner_text() and "已发送" in rows.first.inner_text()
    no_full_national_id(page)
    shot(page, "portal-notifications")


# ---------------------------------------------------------------------------------------------------- clinician + stats
def stats_numbers(page: Any) -> dict[str, str]:
    page.goto("/stats")
    return {
        k: page.get_by_test_id(f"kpi-{k}").inner_text()
        for k in ("orders_checked", "recognized", "declined", "patients_benefited", "money_saved_cny")
    }


def test_clinician_accepts_a_recognizable_blood_count_and_declines_another_order_with_reason_02(
    browser: Any, page: Any, demo: Demo
) -> None:
    manager = browser.new_context(base_url=demo.base, viewport={"width": 1200, "height": 900})
    stats_page = manager.new_page()
    sign_in(stats_page, demo, "stats", "demo-admin")
    before = stats_numbers(stats_page)
    reason_02 = int(stats_page.get_by_test_id("reason-02").inner_text())

    sign_in(page, demo, "clinician", "dr-li-hosp-b")
    page.get_by_label("按本院就诊号查找患者").fill("B-9")
    page.get_by_role("button", name="查找").click()
    page.get_by_test_id("patient").wait_for()
    no_full_national_id(page)

    # order a blood count: order-select answers with a card naming the other hospital's result
    page.get_by_role("searchbox", name=re.compile("添加检查检验项目")).fill("血常规")
    page.locator("#order-results button").first.click()
    order = page.get_by_test_id("order").first
    card = order.get_by_test_id("card")
    card.wait_for(timeout=20_000)
    summary = card.locator(".summary").inner_text()
    assert "可互认" in summary and "北京市第一示范医院" in summary and "有效至" in summary
    assert card.locator("table").count() == 1  # the values
    shot(page, "clinician-card")
    card.get_by_test_id("accept").click()
    expect(order).to_have_attribute("data-state", "withdrawn", timeout=20_000)

    # another order, the white-cell count (an analyte of the same panel): declined with reason 02
    page.get_by_role("searchbox", name=re.compile("添加检查检验项目")).fill("WBC")
    page.locator("#order-results button").first.click()
    second = page.get_by_test_id("order").nth(1)
    second.get_by_test_id("card").wait_for(timeout=20_000)
    second.get_by_test_id("decline").click()
    second.get_by_test_id("reason").select_option("02")
    second.get_by_test_id("comment").fill("病情变化，需复查")
    second.get_by_test_id("confirm-decline").click()
    expect(second).to_have_attribute("data-state", "declined", timeout=20_000)
    assert "02" in second.get_by_test_id("order-state").inner_text()
    page.get_by_role("button", name="签署医嘱").click()
    expect(second).to_have_attribute("data-state", "signed", timeout=20_000)
    shot(page, "clinician")

    after = stats_numbers(stats_page)
    assert int(after["recognized"]) == int(before["recognized"]) + 1
    assert int(after["declined"]) == int(before["declined"]) + 1
    assert int(stats_page.get_by_test_id("reason-02").inner_text()) == reason_02 + 1
    # the page's numbers are the API's numbers
    api = demo.get("demo-admin", "/stats/api/summary")
    assert after["recognized"] == str(api["recognized"])
    assert after["declined"] == str(api["declined"])
    assert after["orders_checked"] == str(api["orders_checked"])
    assert after["patients_benefited"] == str(api["patients_benefited"])
    assert after["money_saved_cny"] == api["money_saved_cny"]
    # the daily chart: recognitions and declines, a column piece for each non-zero figure, nothing for a zero
    pieces = sum((d["recognized"] > 0) + (d["declined"] > 0) for d in api["by_day"])
    assert stats_page.get_by_test_id("per-day").locator("rect.col").count() == pieces > 20
    assert stats_page.get_by_test_id("per-day").locator("rect.col-declined").count() > 0
    # each reason once (the demo's months of decisions give every one of them)
    codes = [r["code"] for r in api["declined_by_reason"]]
    assert all(r["count"] > 0 for r in api["declined_by_reason"])
    for code in codes:
        assert stats_page.get_by_test_id(f"reason-{code}").count() == 1
    assert stats_page.locator(".hbars .bar.none, .hbars li.empty").count() == 0  # no empty boxes
    assert api["break_glass_accesses"] > 0 and api["duplicates_found"] > 0
    no_full_national_id(stats_page)
    shot(stats_page, "stats")
    with stats_page.expect_download() as download:
        stats_page.get_by_test_id("csv").click()
    text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    total = next(line for line in text.splitlines() if line.startswith("total,"))
    assert total.split(",")[5] == str(api["recognized"])
    manager.close()

    # the patient sees that the hospital B clinician viewed their records
    patient = browser.new_context(base_url=demo.base, viewport={"width": 1200, "height": 900})
    p = patient.new_page()
    sign_in(p, demo, "portal", "demo-patient")
    p.goto("/portal/access")
    log = p.get_by_test_id("access-log").inner_text()
    assert "李医生" in log and "北京市第二示范医院" in log
    assert "开单时核对了您的既往结果" in log and "记录了互认决定" in log
    assert "执行了操作" not in log  # every access in words (a PIXm look-up too)
    assert p.get_by_test_id("notifications").count() == 1
    no_full_national_id(p)
    shot(p, "portal-access")
    patient.close()


def test_the_order_screen_in_english_has_english_cards_reasons_and_status(page: Any, demo: Demo) -> None:
    sign_in(page, demo, "clinician", "dr-li-hosp-b")
    page.goto("/clinician?lang=en")
    page.get_by_label("Find a patient by this hospital's MRN").fill("B-9")
    page.get_by_role("button", name="Find").click()
    page.get_by_test_id("patient").wait_for()
    reminder = page.locator("#history").get_by_test_id("card")
    reminder.first.wait_for(timeout=20_000)
    text = reminder.first.inner_text()
    assert "recognizable result(s) from other hospitals" in text and "有效至" not in text
    assert "Item" in text and "项目" not in text  # the reminder's table
    page.get_by_role("searchbox", name=re.compile("Add an order")).fill("CBC")
    page.locator("#order-results button").first.click()
    card = page.get_by_test_id("order").first.get_by_test_id("card")
    card.wait_for(timeout=20_000)
    assert card.locator(".summary").inner_text().startswith("Recognizable:")
    assert "可互认" not in page.get_by_test_id("order").first.inner_text()
    status = page.locator("#status").inner_text()
    assert status.startswith("Recognizable:"), status
    card.get_by_test_id("decline").click()
    options = card.get_by_test_id("reason").locator("option")
    texts = [options.nth(i).inner_text() for i in range(1, options.count())]
    assert texts[1].startswith("02 Result changes quickly"), texts
    assert not any(re.search(r"[\u4e00-\u9fff]", t) for t in texts), texts
    shot(page, "clinician-en")


def test_the_fhir_base_answers_a_browser_and_a_fhir_client(page: Any, demo: Demo) -> None:
    response = page.goto("/fhir")
    assert response.status == 200
    page.get_by_test_id("fhir-links").get_by_role("link", name="CapabilityStatement").click()
    page.wait_for_url(re.compile(r"/fhir/metadata$"))
    assert "CapabilityStatement" in page.content()
    page.wait_for_load_state("networkidle")  # the favicon request of the JSON document has been answered
    page.hr_errors.clear()  # the browser asks for /favicon.ico for a JSON document: a 404 it is meant to get
    r = httpx.get(f"{demo.base}/fhir", headers={"Accept": "application/fhir+json"}, timeout=10)
    assert r.status_code == 200 and r.json()["resourceType"] == "CapabilityStatement"
    assert r.headers["content-location"] == "/fhir/metadata"
    slash = httpx.get(f"{demo.base}/fhir/", timeout=10, follow_redirects=True)  # /fhir/ sends every method to /fhir
    assert slash.history[0].status_code == 307 and slash.json()["resourceType"] == "CapabilityStatement"


def test_pages_switch_to_english_and_fit_a_phone(browser: Any, demo: Demo) -> None:
    phone = browser.new_context(base_url=demo.base, viewport={"width": 390, "height": 844}, is_mobile=True)
    p = phone.new_page()
    sign_in(p, demo, "portal", "demo-patient")
    p.goto("/portal?lang=en")
    assert p.get_by_role("heading", level=1).inner_text() == "My exam and lab reports"
    width = p.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width}px wide on a 390px phone"
    shot(p, "portal-phone-en")
    # the trend's text stays readable on the phone: its dates at least 10 CSS pixels high
    p.goto(p.get_by_test_id("trend-link").first.get_attribute("href"))
    label = p.get_by_test_id("point-date").first.bounding_box()
    assert label is not None and label["height"] >= 10, label
    assert p.evaluate("document.documentElement.scrollWidth") <= 390
    shot(p, "portal-trend-phone")
    phone.close()


# ---------------------------------------------------------------------------------------------------- accessibility
def test_every_page_passes_an_automated_accessibility_audit(browser: Any, demo: Demo) -> None:
    """axe-core (the engine behind Lighthouse's and browsers' accessibility audits) on each page, with the state a
    user sees: signed in, a card shown inline on the order screen."""
    if not AXE.exists():
        message = f"axe-core is not installed at {AXE} (./scripts/test runs npm ci in tests/e2e/a11y)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    # the audit injects a script, which the pages' Content-Security-Policy rightly refuses: this context bypasses it
    context = browser.new_context(base_url=demo.base, viewport={"width": 1200, "height": 900}, bypass_csp=True)
    p = context.new_page()
    found: list[str] = []
    p.goto("/portal/login")
    found += axe_violations(p)
    sign_in(p, demo, "portal", "demo-patient")
    found += axe_violations(p)
    p.goto(p.get_by_test_id("report-row").first.get_by_role("link").get_attribute("href"))
    found += axe_violations(p)
    p.goto("/portal?kind=imaging")  # the image viewer, here saying the images are not reachable (no PACS)
    p.goto(p.get_by_test_id("report-row").first.get_by_role("link").get_attribute("href") + "/images")
    expect(p.get_by_test_id("image-viewer")).to_have_attribute("data-error", "502", timeout=20_000)
    found += axe_violations(p)
    p.goto("/portal")
    p.goto(p.get_by_test_id("trend-link").first.get_attribute("href"))
    found += axe_violations(p)
    p.goto("/portal/access")
    found += axe_violations(p)
    p.goto("/portal/notifications")
    found += axe_violations(p)
    p.goto("/portal/consent")
    found += axe_violations(p)
    p.goto("/portal?lang=en")
    found += axe_violations(p)
    p.goto("/portal?lang=zh")
    sign_in(p, demo, "stats", "demo-admin")
    found += axe_violations(p)
    sign_in(p, demo, "clinician", "dr-li-hosp-b")
    p.get_by_label("按本院就诊号查找患者").fill("B-9")
    p.get_by_role("button", name="查找").click()
    p.get_by_test_id("patient").wait_for()
    p.get_by_role("searchbox", name=re.compile("添加检查检验项目")).fill("血常规")
    p.locator("#order-results button").first.click()
    p.get_by_test_id("card").last.wait_for(timeout=20_000)
    found += axe_violations(p)
    context.close()
    assert not found, "\n".join(found)
