"""The image viewer in a real browser, against the demo as ``./scripts/serve`` runs it with its local PACS:
``hr-registry demo pacs`` (Debian's Orthanc + DICOMweb plugin, holding the demo studies' images) and ``hr-registry
serve`` with the PACS list it writes.

The patient opens a CT report's images, scrolls through a series with the wheel and the keys and switches CT window
presets; a clinician opens a report of a patient in their care, and another outside it by break-glass (every frame
fetch then carries the break-glass headers: without them the gateway would refuse); an ultrasound cine's frames
scroll; on a phone the page fits, the presets are at hand and a swipe moves through the frames. What the canvas shows
is checked to be an image (many grey levels, spread), not a blank or one-colour box; the screenshots go to
build/screenshots/ for the README.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from io import BytesIO
from typing import Any

import pytest

from tests.e2e.orthanc import orthanc_or_skip
from tests.e2e.pages_support import (
    AXE,
    Demo,
    axe_violations,
    chromium,
    demo_pacs,
    demo_server,
    need_chromium,
    new_page,
    no_full_national_id,
    pixels,
    shot,
    sign_in,
)

playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency (./scripts/test)")
expect = playwright_sync.expect
CT_CHEST, US_ABDOMEN = "29252-4", "24558-9"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    need_chromium()
    orthanc_or_skip()  # the demo's local PACS is Orthanc (CI: required)
    var = tmp_path_factory.mktemp("viewer-var")
    with demo_pacs(var) as endpoints:
        env = {"REGISTRY_VAR_DIR": str(var), "REGISTRY_RATE_LIMIT_PER_SECOND": "0",
               "REGISTRY_DICOMWEB_ENDPOINTS": str(endpoints)}  # fmt: skip
        with demo_server(var, env) as (base, _proc):
            yield Demo(base, var)


@pytest.fixture(scope="module")
def browser(demo: Demo) -> Iterator[Any]:
    with chromium() as b:
        yield b


def study_of(demo: Demo, who: str, report: dict[str, Any]) -> dict[str, Any]:
    ref = report["imagingStudy"][0]["reference"]
    return dict(demo.get(who, f"/fhir/{ref}"))


def uid_of(study: dict[str, Any]) -> str:
    return next(i["value"].removeprefix("urn:oid:") for i in study["identifier"] if i["system"] == "urn:dicom:uid")


def shown(page: Any, series: str, number: int, preset: str) -> None:
    expect(page.get_by_test_id("image-viewer")).to_have_attribute(
        "data-shown", f"{series}:{number}:{preset}", timeout=20_000
    )


def canvas_png(page: Any) -> bytes:
    png: bytes = page.get_by_test_id("frame").screenshot()
    return png


def real_image(png: bytes) -> None:
    levels, spread = pixels(png)
    assert levels > 64 and spread > 15, f"the viewer shows no image: {levels} grey levels, stddev {spread:.1f}"


def different(a: bytes, b: bytes) -> float:
    from PIL import Image, ImageChops, ImageStat

    one, two = (Image.open(BytesIO(x)).convert("L") for x in (a, b))
    return float(ImageStat.Stat(ImageChops.difference(one, two)).mean[0])


def first_series(page: Any) -> str:
    series = page.get_by_test_id("series").first
    expect(series).to_have_attribute("aria-pressed", "true", timeout=20_000)
    return str(series.get_attribute("data-series"))


def test_the_patient_scrolls_a_ct_series_and_switches_window_presets(browser: Any, demo: Demo) -> None:
    reports = demo.search_all("demo-patient", "/fhir/DiagnosticReport", code=f"http://loinc.org|{CT_CHEST}")
    report = reports[0]
    uid = uid_of(study_of(demo, "demo-patient", report))
    series = demo.get("demo-patient", f"/dicomweb/studies/{uid}/series")  # what the PACS holds, via the token API
    with new_page(browser, demo.base, viewport={"width": 1300, "height": 900}) as page:
        sign_in(page, demo, "portal", "demo-patient")
        page.goto(f"/portal/reports/{report['id']}")
        page.get_by_test_id("viewer").click()
        page.wait_for_url(re.compile(rf"/portal/reports/{report['id']}/images$"))
        assert page.get_by_test_id("viewer-conclusion").inner_text() == report["conclusion"]
        assert page.get_by_test_id("series").count() == len(series) >= 1
        one = first_series(page)
        shown(page, one, 1, "default")
        count = int(page.get_by_test_id("frame-count").inner_text().split("/")[1])
        instances = demo.get("demo-patient", f"/dicomweb/studies/{uid}/series/{one}/instances")
        assert count == len(instances) >= 8  # one frame per CT slice
        real_image(canvas_png(page))
        page.get_by_test_id("stage").hover()
        for _ in range(3):  # the wheel: one image per notch
            page.mouse.wheel(0, 100)
        shown(page, one, 4, "default")
        page.get_by_test_id("stage").focus()
        page.keyboard.press("ArrowDown")
        shown(page, one, 5, "default")
        page.keyboard.press("End")
        shown(page, one, count, "default")
        page.keyboard.press("Home")
        shown(page, one, 1, "default")
        page.keyboard.press("PageDown")
        shown(page, one, min(11, count), "default")
        default = canvas_png(page)
        # the CT window presets: each renders the same slice anew at its window
        presets = page.get_by_test_id("presets")
        assert presets.is_visible()
        labels = presets.get_by_role("button").all_inner_texts()
        assert [x.split()[0] for x in labels] == ["默认", "肺窗", "纵隔窗", "骨窗"], labels
        presets.get_by_role("button", name=re.compile("肺窗")).click()
        shown(page, one, min(11, count), "lung")
        lung = canvas_png(page)
        real_image(lung)
        assert different(default, lung) > 5, "the lung window changed nothing"
        page.keyboard.press("4")  # the keys 1–4 pick the presets: bone
        shown(page, one, min(11, count), "bone")
        assert different(lung, canvas_png(page)) > 5
        presets.get_by_role("button", name=re.compile("肺窗")).click()
        shown(page, one, min(11, count), "lung")
        # another series: its own frames, thumbnails drawn for every series
        if len(series) > 1:
            page.get_by_test_id("series").nth(1).click()
            other = str(page.get_by_test_id("series").nth(1).get_attribute("data-series"))
            shown(page, other, 1, "lung")
            page.get_by_test_id("series").first.click()
            shown(page, one, 1, "lung")
        for i in range(page.get_by_test_id("series").count()):
            thumb = page.get_by_test_id("series").nth(i).locator("canvas.thumb")
            real_image(thumb.screenshot())
        assert page.locator("img").count() == 0  # canvases only: no image URL in the page
        no_full_national_id(page)
        shot(page, "viewer-ct")
        # the same page in English
        page.goto(f"/portal/reports/{report['id']}/images?lang=en")
        expect(page.get_by_test_id("presets").get_by_role("button", name=re.compile("^Lung"))).to_be_visible(
            timeout=20_000
        )
        assert "Back to the report" in page.content()


def test_an_ultrasound_cine_scrolls_through_its_frames(browser: Any, demo: Demo) -> None:
    """The demo's ultrasound is one multi-frame instance (30 frames): the viewer lists every frame, no presets."""
    reports = demo.search_all("hosp-b-system", "/fhir/DiagnosticReport", code=f"http://loinc.org|{US_ABDOMEN}")
    assert reports, "the demo has an ultrasound in hospital B's care context"
    with new_page(browser, demo.base) as page:
        sign_in(page, demo, "clinician", "dr-li-hosp-b")
        page.goto(f"/clinician/reports/DiagnosticReport/{reports[0]['id']}/images")
        one = first_series(page)
        shown(page, one, 1, "default")
        assert page.get_by_test_id("frame-count").inner_text() == "1 / 30"
        assert not page.get_by_test_id("presets").is_visible()  # window presets are for CT
        first = canvas_png(page)
        real_image(first)
        page.get_by_test_id("stage").hover()
        for _ in range(10):
            page.mouse.wheel(0, 100)
        shown(page, one, 11, "default")
        assert different(first, canvas_png(page)) > 1, "frame 11 of the cine looks like frame 1"


def test_a_clinician_opens_images_in_care_and_by_break_glass_outside_it(browser: Any, demo: Demo) -> None:
    ct = demo.search_all("demo-admin", "/fhir/DiagnosticReport", code=f"http://loinc.org|{CT_CHEST}")
    in_care = [r for r in ct if demo.request("hosp-b-system", f"/fhir/DiagnosticReport/{r['id']}").status_code == 200]
    outside = [r for r in ct if r not in in_care]
    assert in_care and outside
    with new_page(browser, demo.base) as page:
        sign_in(page, demo, "clinician", "dr-li-hosp-b")
        page.goto(f"/clinician/reports/DiagnosticReport/{in_care[0]['id']}")
        page.get_by_test_id("viewer").click()
        one = first_series(page)
        shown(page, one, 1, "default")
        real_image(canvas_png(page))
        assert page.get_by_test_id("image-viewer").get_attribute("data-base") == "/clinician/dicomweb"

        # outside the care context: the report is refused, the break-glass form opens it, and its images
        target = outside[0]
        page.goto(f"/clinician/reports/DiagnosticReport/{target['id']}")
        assert page.get_by_test_id("refused").is_visible()
        page.hr_errors.clear()  # the refusal is a 404 the browser logs
        page.get_by_label("查看理由").fill("急诊：外院胸部CT对比")
        page.get_by_role("button", name="紧急授权查看").click()
        expect(page.get_by_test_id("break-glass-banner")).to_be_visible()
        page.get_by_test_id("viewer").click()  # a form: the reason goes with it
        page.wait_for_url(re.compile(rf"/clinician/reports/DiagnosticReport/{target['id']}/images$"))
        viewer = page.get_by_test_id("image-viewer")
        assert viewer.get_attribute("data-break-glass") == "急诊：外院胸部CT对比"
        one = first_series(page)
        shown(page, one, 1, "default")  # every fetch carried the break-glass headers: none was refused
        page.get_by_test_id("presets").get_by_role("button", name=re.compile("纵隔窗")).click()
        shown(page, one, 1, "mediastinum")
        real_image(canvas_png(page))
        shot(page, "viewer-break-glass")
    # audited as break-glass: the study opened by dr-li with purpose BTG and the reason
    events = demo.get("demo-admin", "/fhir/AuditEvent", agent="dr-li-hosp-b", **{"entity-type": "ImagingStudy"})
    glass = [
        e["resource"]
        for e in events.get("entry", [])
        if any(c.get("code") == "BTG" for p in e["resource"].get("purposeOfEvent", []) for c in p.get("coding", []))
    ]
    assert glass and glass[0]["purposeOfEvent"][0]["text"] == "急诊：外院胸部CT对比"


def _swipe(page: Any, x: float, y0: float, y1: float, steps: int = 8) -> None:
    """A one-finger swipe through the browser's touch input (Chrome DevTools Protocol Input.dispatchTouchEvent)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y0}]})
    for i in range(1, steps + 1):
        y = y0 + (y1 - y0) * i / steps
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def test_on_a_phone_the_viewer_fits_its_presets_are_at_hand_and_a_swipe_scrolls(browser: Any, demo: Demo) -> None:
    report = demo.search_all("demo-patient", "/fhir/DiagnosticReport", code=f"http://loinc.org|{CT_CHEST}")[0]
    phone = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
    with new_page(browser, demo.base, **phone) as page:
        sign_in(page, demo, "portal", "demo-patient")
        page.goto(f"/portal/reports/{report['id']}/images")
        one = first_series(page)
        shown(page, one, 1, "default")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        for button in page.get_by_test_id("presets").get_by_role("button").all():
            box = button.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
            assert box["height"] >= 40  # a finger's target
        stage = page.get_by_test_id("stage").bounding_box()
        assert stage is not None and stage["width"] >= 350
        middle = stage["x"] + stage["width"] / 2
        _swipe(page, middle, stage["y"] + stage["height"] * 0.8, stage["y"] + stage["height"] * 0.3)  # finger up
        viewer = page.get_by_test_id("image-viewer")
        expect(viewer).not_to_have_attribute("data-shown", f"{one}:1:default", timeout=20_000)
        series, number, preset = (viewer.get_attribute("data-shown") or "::").split(":")
        assert series == one and int(number) > 1 and preset == "default"  # the next images, not the previous
        page.get_by_test_id("presets").get_by_role("button", name=re.compile("骨窗")).tap()
        shown(page, one, int(number), "bone")
        real_image(canvas_png(page))
        shot(page, "viewer-phone")


def test_the_viewer_passes_an_automated_accessibility_audit(browser: Any, demo: Demo) -> None:
    """axe-core (WCAG 2.1 A/AA) on the viewer as a user sees it: series listed, a frame shown, in both languages."""
    if not AXE.exists():
        message = f"axe-core is not installed at {AXE} (./scripts/test runs npm ci in tests/e2e/a11y)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    report = demo.search_all("demo-patient", "/fhir/DiagnosticReport", code=f"http://loinc.org|{CT_CHEST}")[0]
    # the audit injects a script, which the pages' Content-Security-Policy rightly refuses: this context bypasses it
    with new_page(browser, demo.base, bypass_csp=True) as page:
        sign_in(page, demo, "portal", "demo-patient")
        found: list[str] = []
        for lang in ("zh", "en"):
            page.goto(f"/portal/reports/{report['id']}/images?lang={lang}")
            shown(page, first_series(page), 1, "default")
            found += axe_violations(page)
        assert not found, "\n".join(found)
