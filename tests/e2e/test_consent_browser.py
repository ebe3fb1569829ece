"""The patient's sharing consent in a real browser (headless Chromium, ``hr-registry serve`` with the demo region, as
tests/e2e/test_pages_browser.py runs it): the patient pauses sharing with hospital B on the consent page, B's
clinician ordering a blood count is told "患者已限制共享" instead of a card, the patient resumes and the card is back;
the sensitive-items switch turns the separate consent on and off. Writes docs/screenshots/portal-consent.png."""

from __future__ import annotations

import re
from typing import Any

from tests.e2e.test_pages_browser import Demo, browser, demo, expect, page, shot, sign_in

__all__ = ["browser", "demo", "page"]  # the fixtures, shared with the pages' browser tests


def _order_blood_count(page: Any) -> Any:
    page.goto("/clinician")
    page.get_by_label("按本院就诊号查找患者").fill("B-9")
    page.get_by_role("button", name="查找").click()
    page.get_by_test_id("patient").wait_for()
    page.get_by_role("searchbox", name=re.compile("添加检查检验项目")).fill("血常规")
    page.locator("#order-results button").first.click()
    order = page.get_by_test_id("order").last
    order.get_by_test_id("card").wait_for(timeout=20_000)
    return order


def test_the_patient_pauses_and_resumes_sharing_and_the_order_screen_says_so(
    browser: Any, page: Any, demo: Demo
) -> None:
    sign_in(page, demo, "portal", "demo-patient")
    page.get_by_test_id("consent-link").click()
    page.wait_for_url(re.compile(r"/portal/consent$"))
    row = page.locator('tr[data-org="hosp-b"]')
    expect(row).to_have_attribute("data-state", "shared")
    clinician = browser.new_context(base_url=demo.base, viewport={"width": 1200, "height": 900}).new_page()
    sign_in(clinician, demo, "clinician", "dr-li-hosp-b")
    try:
        page.get_by_test_id("toggle-hosp-b").click()
        expect(page.get_by_test_id("saved")).to_be_visible()
        expect(page.locator('tr[data-org="hosp-b"]')).to_have_attribute("data-state", "paused")

        # the sensitive-items switch: off by default, on, and the page says so
        switch = page.get_by_test_id("toggle-sensitive")
        expect(switch).to_have_attribute("aria-pressed", "false")
        expect(page.get_by_test_id("sensitive-state")).to_have_attribute("data-state", "kept")
        switch.click()
        expect(page.get_by_test_id("sensitive-state")).to_have_attribute("data-state", "shared")
        expect(page.get_by_test_id("toggle-sensitive")).to_have_attribute("aria-pressed", "true")
        shot(page, "portal-consent")

        order = _order_blood_count(clinician)
        card = order.get_by_test_id("card")
        assert card.locator(".summary").inner_text().startswith("患者已限制共享")
        expect(order).to_have_attribute("data-state", "restricted")
        assert card.get_by_test_id("accept").count() == 0  # a notice: nothing to recognize or decline
    finally:
        page.goto("/portal/consent")
        if page.locator('tr[data-org="hosp-b"][data-state="paused"]').count():
            page.get_by_test_id("toggle-hosp-b").click()
        if page.get_by_test_id("sensitive-state").get_attribute("data-state") == "shared":
            page.get_by_test_id("toggle-sensitive").click()
    expect(page.locator('tr[data-org="hosp-b"]')).to_have_attribute("data-state", "shared")
    expect(page.get_by_test_id("sensitive-state")).to_have_attribute("data-state", "kept")
    order = _order_blood_count(clinician)
    assert "可互认" in order.get_by_test_id("card").locator(".summary").inner_text()
    expect(order).to_have_attribute("data-state", "advised")
    clinician.context.close()
