"""The image viewer's pages without a browser, on SQLite and PostgreSQL: who gets the viewer of which report, what the
page carries (the study, the gateway's page prefix, the conclusion — never the hospital's PACS address), the pages'
Content-Security-Policy, break-glass through the clinician's form (audited BTG, the reason handed to the script), and
the report page's link to it. The viewer's script and real images are exercised in tests/e2e/test_viewer_browser.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from registry.auth import PrincipalKind
from registry.web.i18n import TEXT
from tests.e2e.imaging_samples import endpoint
from tests.integration.conftest import Api, new_resident_id, unique
from tests.integration.test_pages import csrf_of, sign_in

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'self'; form-action 'self'; base-uri 'none'"
)
DCM = "http://dicom.nema.org/resources/ontology/DCM"
PACS_ADDRESS = "https://pacs.hosp-a.example.cn/dicom-web"  # the Endpoint's address (never fetched, never shown)


@pytest.fixture
def browser(api: Api) -> Iterator[TestClient]:
    with TestClient(api.client.app, follow_redirects=False) as client:
        yield client


def _client(api: Api, kind: PrincipalKind, org: str | None = None, **extra: Any) -> tuple[str, str]:
    client_id = unique(kind.value)
    return client_id, api.ctx.principals.add(kind, client_id, f"test {kind.value}", org_id=org, **extra).secret


@pytest.fixture
def imaging(api: Api) -> dict[str, Any]:
    """A person registered at A (and, for ``in_care``, at B) with A's chest CT and its report; a lab report too."""
    r = api.put("/fhir/Endpoint/hosp-a-wado", endpoint("hosp-a-wado", "hosp-a"), who="hosp-a-system")
    assert r.status_code in (200, 201), r.text
    out: dict[str, Any] = {}
    for who in ("in_care", "outside"):
        nid = new_resident_id()
        patient = api.patient("hosp-a", unique("A"), nid)
        if who == "in_care":
            api.patient("hosp-b", unique("B"), nid)
        uid = f"2.25.{int(unique('')[2:12], 16)}"
        study = {
            "resourceType": "ImagingStudy", "status": "available",
            "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}],
            "subject": {"reference": f"Patient/{patient['id']}"}, "started": "2026-11-01T09:00:00+08:00",
            "modality": [{"system": DCM, "code": "CT"}], "endpoint": [{"reference": "Endpoint/hosp-a-wado"}],
            "numberOfSeries": 1, "numberOfInstances": 12,
            "series": [{"uid": f"{uid}.1", "modality": {"system": DCM, "code": "CT"},
                        "bodySite": {"system": "http://snomed.info/sct", "code": "51185008"}}],
        }  # fmt: skip
        r = api.post("/fhir/ImagingStudy", study, who="hosp-a-system")
        assert r.status_code == 201, r.text
        conclusion = f"右肺上叶小结节-{unique('c')}"
        report = api.report(
            "hosp-a", patient["id"], unique("R"), conclusion=conclusion,
            code={"coding": [{"system": "http://loinc.org", "code": "29252-4"}]},
            category=[{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD"}]}],
            imagingStudy=[{"reference": f"ImagingStudy/{r.json()['id']}"}],
        )  # fmt: skip
        key = api.ctx.identity.master_key("https://hr-registry.org.cn/fhir/sid/cn-resident-id", nid)
        client, secret = _client(api, PrincipalKind.PATIENT, patient_key=key)
        lab = api.report("hosp-a", patient["id"], unique("L"))
        out[who] = {"uid": uid, "study": r.json()["id"], "report": report, "lab": lab, "client": client,
                    "secret": secret, "conclusion": conclusion}  # fmt: skip
    return out


def test_the_patient_opens_the_viewer_of_an_own_imaging_report(browser: TestClient, imaging: dict[str, Any]) -> None:
    mine, other = imaging["in_care"], imaging["outside"]
    sign_in(browser, "portal", mine["client"], mine["secret"])
    report = browser.get(f"/portal/reports/{mine['report']['id']}")
    assert report.status_code == 200
    assert f'href="/portal/reports/{mine["report"]["id"]}/images"' in report.text
    assert PACS_ADDRESS not in report.text and "dicom-web" not in report.text  # no link to the hospital's PACS
    page = browser.get(f"/portal/reports/{mine['report']['id']}/images")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CSP  # the pages' own policy, nothing added for images
    assert page.headers["cache-control"] == "no-store"
    assert f'data-study="{mine["uid"]}"' in page.text and 'data-base="/portal/dicomweb"' in page.text
    assert mine["conclusion"] in page.text
    assert "data-break-glass" not in page.text and PACS_ADDRESS not in page.text
    assert '<script src="/assets/viewer.js" defer></script>' in page.text and "<img" not in page.text
    for name, center, width in (("肺窗", -600, 1500), ("纵隔窗", 40, 350), ("骨窗", 300, 2000)):
        assert re.search(rf'data-window="{center},{width}"[^>]*>{name} ', page.text), name
    # a report without a study has no viewer; another patient's report is not found, and says nothing of it
    lab = browser.get(f"/portal/reports/{mine['lab']['id']}/images")
    assert lab.status_code == 404 and TEXT["zh"]["no_images"] in lab.text
    theirs = browser.get(f"/portal/reports/{other['report']['id']}/images")
    assert theirs.status_code == 404
    assert other["conclusion"] not in theirs.text and other["uid"] not in theirs.text
    # in English
    english = browser.get(f"/portal/reports/{mine['report']['id']}/images?lang=en")
    assert "Back to the report" in english.text and ">Lung " in english.text and "肺窗" not in english.text


def test_without_a_session_the_viewer_sends_to_sign_in(browser: TestClient, imaging: dict[str, Any]) -> None:
    rid = imaging["in_care"]["report"]["id"]
    for path in (f"/portal/reports/{rid}/images", f"/clinician/reports/DiagnosticReport/{rid}/images"):
        r = browser.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith(f"/{path.split('/')[1]}/login?next=")


def test_a_clinician_opens_the_viewer_in_care_and_by_break_glass_outside_it(
    api: Api, browser: TestClient, imaging: dict[str, Any]
) -> None:
    clinician, secret = _client(api, PrincipalKind.CLINICIAN, "hosp-b")
    sign_in(browser, "clinician", clinician, secret)
    care, outside = imaging["in_care"], imaging["outside"]
    page = browser.get(f"/clinician/reports/DiagnosticReport/{care['report']['id']}/images")
    assert page.status_code == 200
    assert 'data-base="/clinician/dicomweb"' in page.text and care["conclusion"] in page.text
    assert f'href="/clinician/reports/DiagnosticReport/{care["report"]["id"]}"' in page.text  # back to the report
    # a card may link to the study itself (no report yet): its viewer too
    study = browser.get(f"/clinician/reports/ImagingStudy/{care['study']}/images")
    assert study.status_code == 200 and f'data-study="{care["uid"]}"' in study.text
    assert TEXT["zh"]["viewer_no_conclusion"] in study.text

    # outside the care context: the refusal is the break-glass form, posting to the viewer itself
    path = f"/clinician/reports/DiagnosticReport/{outside['report']['id']}/images"
    refused = browser.get(path)
    assert refused.status_code == 404 and f'action="{path}"' in refused.text
    assert outside["conclusion"] not in refused.text and outside["uid"] not in refused.text
    forged = browser.post(path, data={"reason": "急诊", "csrf": "forged"})
    assert forged.status_code == 400 and outside["uid"] not in forged.text
    empty = browser.post(path, data={"reason": " ", "csrf": csrf_of(refused.text)})
    assert empty.status_code == 400
    opened = browser.post(path, data={"reason": "急诊抢救 <b>", "csrf": csrf_of(refused.text)})
    assert opened.status_code == 200, opened.text
    assert 'data-break-glass="急诊抢救 &lt;b&gt;"' in opened.text  # escaped; the script sends it with each fetch
    assert f'data-study="{outside["uid"]}"' in opened.text and outside["conclusion"] in opened.text
    # the way back to the report is the same break-glass, posted again (a plain link would be refused)
    assert re.search(rf'<form method="post" action="/clinician/reports/DiagnosticReport/{outside["report"]["id"]}"',
                     opened.text)  # fmt: skip
    with api.ctx.engine.connect() as conn:
        purposes = conn.execute(
            text("SELECT purpose, purpose_reason FROM audit_event WHERE client_id = :c AND purpose IS NOT NULL"),
            {"c": clinician},
        ).all()
    assert ("BTG", "急诊抢救 <b>") in [tuple(p) for p in purposes]

    # the report page opened by break-glass hands the reason on to the viewer (a form, not a link)
    report = browser.post(f"/clinician/reports/DiagnosticReport/{outside['report']['id']}",
                          data={"reason": "急诊", "csrf": csrf_of(refused.text)})  # fmt: skip
    assert report.status_code == 200
    assert re.search(rf'<form method="post" action="{path}"', report.text)
    assert '<input type="hidden" name="reason" value="急诊">' in report.text


def test_the_patient_page_is_not_the_clinicians(browser: TestClient, imaging: dict[str, Any]) -> None:
    mine = imaging["in_care"]
    sign_in(browser, "portal", mine["client"], mine["secret"])
    r = browser.get(f"/clinician/reports/DiagnosticReport/{mine['report']['id']}/images")
    assert r.status_code == 303 and "/clinician/login" in r.headers["location"]
