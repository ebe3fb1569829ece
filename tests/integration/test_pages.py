"""The web pages without a browser: sign-in, session cookie, CSRF, redirects, and what each principal may see.

The browser tests (tests/e2e/test_pages_browser.py) drive the same pages in Chromium; these pin the security
behaviour on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from registry.app import create_app
from registry.auth import PrincipalKind
from registry.store.records import AuditFilter
from tests.integration.conftest import Api, make_settings, new_resident_id, unique

FULL_NATIONAL_ID = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")


@pytest.fixture
def browser(api: Api) -> Iterator[TestClient]:
    """A client of its own (its own cookie jar), like a separate browser."""
    with TestClient(api.client.app, follow_redirects=False) as client:
        yield client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the form carries no CSRF token"
    return match.group(1)


def sign_in(client: TestClient, area: str, account: str, secret: str, **extra: str) -> Any:
    page = client.get(f"/{area}/login")
    assert page.status_code == 200
    return client.post(
        f"/{area}/login", data={"account": account, "secret": secret, "csrf": csrf_of(page.text), **extra}
    )


@pytest.fixture
def two_patients(api: Api) -> dict[str, Any]:
    """Two people with a report each (at hospital A) and a patient sign-in for each."""
    out: dict[str, Any] = {}
    for who in ("p1", "p2"):
        nid = new_resident_id()
        patient = api.patient("hosp-a", unique("A"), nid)
        report = api.report("hosp-a", patient["id"], unique("R"), conclusion=f"结论-{unique('c')}")
        key = api.ctx.identity.master_key("https://hr-registry.org.cn/fhir/sid/cn-resident-id", nid)
        client_id = unique(f"patient-{who}")
        secret = api.ctx.principals.add(PrincipalKind.PATIENT, client_id, f"患者 {who}", patient_key=key).secret
        out[who] = {"nid": nid, "patient": patient, "report": report, "client": client_id, "secret": secret}
    return out


def test_a_page_without_a_session_sends_the_user_to_sign_in(browser: TestClient) -> None:
    for path in ("/portal", "/portal/access", "/clinician", "/stats", "/stats/export.csv"):
        r = browser.get(path)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith(f"/{path.split('/')[1]}/login?next=")


def test_sign_in_sets_an_httponly_samesite_cookie_and_lands_on_the_page(
    browser: TestClient, two_patients: dict[str, Any]
) -> None:
    p1 = two_patients["p1"]
    r = sign_in(browser, "portal", p1["client"], p1["secret"], next="/portal/access")
    assert r.status_code == 303
    assert r.headers["location"] == "/portal/access"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
    page = browser.get("/portal")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'self'" in page.headers["content-security-policy"]


def test_the_cookie_is_secure_when_configured(api: Api, tmp_path: Any) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'r.sqlite3'}", cookie_secure=True)
    app = create_app(settings)
    secret = app.state.ctx.principals.add(PrincipalKind.ADMIN, "boss", "Boss").secret
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        r = sign_in(client, "stats", "boss", secret)
        assert r.status_code == 303
        assert "secure" in r.headers["set-cookie"].lower()
    app.state.ctx.engine.dispose()


def test_wrong_credentials_wrong_kind_and_missing_csrf_are_refused_and_audited(
    api: Api, browser: TestClient, two_patients: dict[str, Any]
) -> None:
    p1 = two_patients["p1"]
    r = sign_in(browser, "portal", p1["client"], "not-the-secret")
    assert r.status_code == 401
    assert "账号或密码不正确" in r.text
    r = sign_in(browser, "clinician", p1["client"], p1["secret"])  # a patient on the order screen
    assert r.status_code == 401
    assert "此账号不能登录本页面" in r.text
    r = browser.post("/portal/login", data={"account": p1["client"], "secret": p1["secret"], "csrf": "forged"})
    assert r.status_code == 400
    assert browser.get("/portal").status_code == 303  # still signed out
    with api.ctx.uow.begin(audit_only=True) as repo:
        rows = repo.audit_events(AuditFilter(count=50))
    logins = [row for row in rows if row.interaction == "login"]
    assert any(row.outcome == "4" and "bad_credentials" in (row.detail or "") for row in logins)
    assert any(row.outcome == "4" and "wrong_kind" in (row.detail or "") for row in logins)


def test_no_open_redirect_after_sign_in(browser: TestClient, two_patients: dict[str, Any]) -> None:
    p1 = two_patients["p1"]
    for target in ("https://evil.example/", "//evil.example/portal", "/stats", "/portal\\@evil"):
        r = sign_in(browser, "portal", p1["client"], p1["secret"], next=target)
        assert r.headers["location"] == "/portal", target


def test_a_patient_sees_only_their_own_reports_and_never_a_full_national_id(
    browser: TestClient, two_patients: dict[str, Any]
) -> None:
    p1, p2 = two_patients["p1"], two_patients["p2"]
    sign_in(browser, "portal", p1["client"], p1["secret"])
    page = browser.get("/portal")
    assert f"/portal/reports/{p1['report']['id']}" in page.text
    assert f"/portal/reports/{p2['report']['id']}" not in page.text
    assert p1["nid"][:3] + "*" in page.text and p1["nid"] not in page.text
    assert browser.get(f"/portal/reports/{p1['report']['id']}").status_code == 200
    other = browser.get(f"/portal/reports/{p2['report']['id']}")
    assert other.status_code == 404
    assert p2["report"]["conclusion"] not in other.text
    for path in ("/portal", f"/portal/reports/{p1['report']['id']}", "/portal/access"):
        assert not FULL_NATIONAL_ID.search(browser.get(path).text), path


def test_who_viewed_my_records_lists_the_clinician_who_read_them(
    api: Api, browser: TestClient, two_patients: dict[str, Any]
) -> None:
    p1 = two_patients["p1"]
    api.patient("hosp-b", unique("B"), p1["nid"])  # hospital B now has the patient in care
    r = api.get("/fhir/DiagnosticReport", who="dr-b", params={"patient": f"Patient/{p1['patient']['id']}"})
    assert r.status_code == 200 and len(r.json().get("entry", [])) >= 1
    sign_in(browser, "portal", p1["client"], p1["secret"])
    page = browser.get("/portal/access")
    assert "医生 B" in page.text and "B 医院" in page.text
    assert "查询了您的检查检验报告" in page.text
    assert "searched your reports" in browser.get("/portal/access?lang=en").text


def _new_client(api: Api, kind: PrincipalKind, org: str | None = None) -> tuple[str, str]:
    """A principal of its own with a known secret (rotating a shared one would revoke the tokens other tests hold)."""
    client_id = unique(kind.value)
    return client_id, api.ctx.principals.add(kind, client_id, f"test {kind.value}", org_id=org).secret


def test_the_order_screen_token_needs_the_session_and_its_csrf_token(api: Api, browser: TestClient) -> None:
    clinician, secret = _new_client(api, PrincipalKind.CLINICIAN, "hosp-b")
    assert browser.post("/clinician/token").status_code == 401
    sign_in(browser, "clinician", clinician, secret)
    page = browser.get("/clinician")
    assert page.status_code == 200
    csrf = re.search(r'data-csrf="([^"]+)"', page.text)
    assert csrf
    assert browser.post("/clinician/token", headers={"X-CSRF-Token": "forged"}).status_code == 403
    r = browser.post("/clinician/token", headers={"X-CSRF-Token": csrf.group(1)})
    assert r.status_code == 200
    token = r.json()["access_token"]
    search = browser.get("/fhir/Patient", headers={"Authorization": f"Bearer {token}"})
    assert search.status_code == 200  # a real registry token with the clinician's rights


def test_sign_out_needs_the_csrf_token(browser: TestClient, two_patients: dict[str, Any]) -> None:
    p1 = two_patients["p1"]
    sign_in(browser, "portal", p1["client"], p1["secret"])
    browser.post("/portal/logout", data={"csrf": "forged"})
    assert browser.get("/portal").status_code == 200  # a forged sign-out does nothing
    page = browser.get("/portal")
    browser.post("/portal/logout", data={"csrf": csrf_of(page.text)})
    assert browser.get("/portal").status_code == 303


def test_statistics_page_and_csv_for_a_manager(api: Api, browser: TestClient) -> None:
    manager, secret = _new_client(api, PrincipalKind.ADMIN)
    sign_in(browser, "stats", manager, secret)
    page = browser.get("/stats")
    assert page.status_code == 200
    summary = api.get("/stats/api/summary").json()
    shown = re.search(r'data-testid="kpi-recognized">(\d+)<', page.text)
    assert shown and int(shown.group(1)) == summary["recognized"]
    csv = browser.get("/stats/export.csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert browser.get("/stats?start=yesterday").status_code == 400
    assert browser.get("/stats?kind=other").status_code == 400


def test_a_corrected_report_says_so_and_a_withdrawn_one_is_marked(
    api: Api, browser: TestClient, two_patients: dict[str, Any]
) -> None:
    p1 = two_patients["p1"]
    report = dict(p1["report"])
    report["status"] = "corrected"
    r = api.put(f"/fhir/DiagnosticReport/{report['id']}", report, who="hosp-a-system")
    assert r.status_code == 200, r.text
    sign_in(browser, "portal", p1["client"], p1["secret"])
    page = browser.get("/portal")
    assert 'data-testid="corrected"' in page.text and "已更正" in page.text
    assert "已更正" in browser.get(f"/portal/reports/{report['id']}").text
    assert "corrected" in browser.get("/portal?lang=en").text


def test_a_card_link_to_a_study_without_a_report_opens_for_the_clinician_in_care_only(
    api: Api, browser: TestClient, two_patients: dict[str, Any]
) -> None:
    """A study received over DICOM before its RIS report: the card links to the ImagingStudy itself."""
    p1, p2 = two_patients["p1"], two_patients["p2"]
    uid = f"2.25.{int(unique('')[1:9], 16)}"
    study = {
        "resourceType": "ImagingStudy",
        "identifier": [
            {"system": "urn:dicom:uid", "value": f"urn:oid:{uid}", "assigner": {"reference": "Organization/hosp-a"}}
        ],
        "status": "available",
        "subject": {"reference": f"Patient/{p1['patient']['id']}"},
        "started": "2026-11-01T09:00:00+08:00",
        "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}],
        "numberOfSeries": 1,
        "numberOfInstances": 42,
        "series": [
            {
                "uid": f"{uid}.1",
                "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"},
                "bodySite": {"system": "http://snomed.info/sct", "code": "51185008", "display": "Thorax"},
            }
        ],
    }
    r = api.post("/fhir/ImagingStudy", study, who="hosp-a-system")
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    api.patient("hosp-b", unique("B"), p1["nid"])  # p1 is now in hospital B's care; p2 is not
    clinician, secret = _new_client(api, PrincipalKind.CLINICIAN, "hosp-b")
    sign_in(browser, "clinician", clinician, secret)
    page = browser.get(f"/clinician/reports/ImagingStudy/{sid}")
    assert page.status_code == 200, page.text
    assert "A 医院" in page.text and "Thorax" in page.text and ">42<" in page.text
    other = browser.get(f"/clinician/reports/DiagnosticReport/{p2['report']['id']}")
    assert other.status_code == 404
    assert browser.get(f"/clinician/reports/Patient/{p1['patient']['id']}").status_code == 404


def test_the_patients_own_browsing_does_not_crowd_the_clinician_out_of_who_viewed(
    api: Api, browser: TestClient, two_patients: dict[str, Any]
) -> None:
    p1 = two_patients["p1"]
    api.patient("hosp-b", unique("B"), p1["nid"])
    r = api.get("/fhir/DiagnosticReport", who="dr-b", params={"patient": f"Patient/{p1['patient']['id']}"})
    assert r.status_code == 200
    token = api.ctx.principals.token(api.ctx.principals.get(p1["client"])).access_token  # type: ignore[arg-type]
    for _ in range(650):  # more than the page lists (200), three times over
        own = browser.get("/fhir/DiagnosticReport", headers={"Authorization": f"Bearer {token}"})
        assert own.status_code == 200
    sign_in(browser, "portal", p1["client"], p1["secret"])
    assert "医生 B" in browser.get("/portal/access").text


BTG = {
    "Category": 'http://terminology.hl7.org/CodeSystem/v3-ActReason#BTG; scheme="http://hl7.org/fhir/tag/security"',
    "X-Break-Glass-Reason": "emergency resuscitation",
}


def test_who_viewed_names_every_access_in_words_marks_break_glass_and_lists_notifications(
    api: Api, browser: TestClient, two_patients: dict[str, Any]
) -> None:
    p1 = two_patients["p1"]
    mrn = next(i["value"] for i in p1["patient"]["identifier"] if "mrn" in i["system"])
    pix = api.get("/fhir/Patient/$ihe-pix", who="dr-b", params={"sourceIdentifier": f"http://hosp-a.example/mrn|{mrn}"})
    r = api.get("/fhir/DiagnosticReport", who="dr-b", params={"patient": f"Patient/{p1['patient']['id']}"},
                headers=BTG)  # fmt: skip
    assert r.status_code == 200 and r.json().get("entry"), r.text  # outside B's care: opened by break-glass
    sign_in(browser, "portal", p1["client"], p1["secret"])
    page = browser.get("/portal/access").text
    assert "执行了操作" not in page
    if pix.status_code == 200:  # the PIXm look-up is in words a patient understands
        assert "核对了您在各医院的身份和就诊号" in page
    assert 'data-testid="break-glass-row"' in page and "理由：emergency resuscitation" in page
    assert 'data-testid="break-glass-summary"' in page
    assert 'data-testid="notifications"' in page and "还没有发给您的通知" in page
    en = browser.get("/portal/access?lang=en").text
    assert "Emergency access" in en and "Notifications sent to you" in en
    # the header says whose records these are
    assert re.search(r'data-testid="who">测试<', browser.get("/portal").text)


def test_the_fhir_base_answers_a_browser_with_a_page_and_a_client_with_the_capability_statement(api: Api) -> None:
    client = api.client
    html = client.get("/fhir", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert 'href="/fhir/metadata"' in html.text and 'href="/docs"' in html.text
    slash = client.get("/fhir/", follow_redirects=False)  # one base: with a slash, every method is sent to it
    assert slash.status_code == 307 and slash.headers["location"].endswith("/fhir")
    for path in ("/fhir", "/fhir/"):
        for accept in (None, "application/fhir+json"):
            r = client.get(path, headers={"Accept": accept} if accept else {})
            assert r.status_code == 200, (path, accept)
            assert r.json()["resourceType"] == "CapabilityStatement"
            assert r.headers["content-location"] == "/fhir/metadata"
    assert client.get("/fhir", headers={"Accept": "application/xml"}).status_code == 406


def test_statistics_dates_are_typed_in_the_pages_language(api: Api, browser: TestClient) -> None:
    manager, secret = _new_client(api, PrincipalKind.ADMIN)
    sign_in(browser, "stats", manager, secret)
    zh = browser.get("/stats").text
    assert 'type="date"' not in zh and 'placeholder="年-月-日"' in zh
    en = browser.get("/stats?lang=en").text
    assert 'placeholder="YYYY-MM-DD"' in en and "Dates as year-month-day" in en
