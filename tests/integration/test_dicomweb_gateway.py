"""The DICOMweb gateway against a real Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb`` on loopback), on SQLite and
PostgreSQL: QIDO-RS and WADO-RS through the gateway answer what Orthanc answers (its URLs replaced by the gateway's),
rendered frames and thumbnails decode to images of the right size, a principal outside the care context gets 403 and
no image, a series of another study is 404, each study opened is one AuditEvent (shown to the patient), consent is
respected, and a PACS that hangs or is stopped is a clear 504 / 502 within the configured bound.

The region: person P1 is registered at hospitals A and B, P2 at A only. Hospital A issues the studies; its PACS is the
Orthanc here, configured for the gateway as ``hosp-a-wado``. Dr B (hospital B) is in P1's care context, Dr C is not.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.parser import BytesParser
from email.policy import HTTP
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from pydicom import dcmread
from sqlalchemy import text

from registry.app import create_app
from registry.auth import PrincipalKind
from registry.context import AppContext
from tests.e2e.imaging_samples import Study, endpoint, imaging_study, make_study
from tests.e2e.orthanc import Orthanc, orthanc, start_orthanc  # noqa: F401 - the fixture
from tests.integration.conftest import NATIONAL, Api, Database, make_settings, resident_id, setup_region
from tests.integration.test_recognition import T0, Clock

BTG = {
    "Category": 'http://terminology.hl7.org/CodeSystem/v3-ActReason#BTG; scheme="http://hl7.org/fhir/tag/security"',
    "X-Break-Glass-Reason": quote("急诊抢救"),  # UTF-8, percent-encoded (policy.purpose)
}
BOUND = 2.0  # the flaky PACS's timeout (seconds): a hung PACS must be a 504 within it (and some slack)


@dataclass
class Region:
    api: Api
    ctx: AppContext
    clock: Clock
    pacs: Orthanc
    flaky: Orthanc
    studies: dict[str, Study]
    ids: dict[str, str]  # ImagingStudy resource ids by study name
    secrets: dict[str, str] = field(default_factory=dict)
    patients: dict[str, str] = field(default_factory=dict)


def _put(api: Api, body: dict[str, Any], who: str) -> None:
    r = api.put(f"/fhir/Endpoint/{body['id']}", body, who=who)
    assert r.status_code in (200, 201), r.text


@pytest.fixture(scope="module")
def region(
    database: Database,
    orthanc: Orthanc,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Region]:
    flaky = start_orthanc(tmp_path_factory.mktemp("flaky-pacs"))
    config = {
        "hosp-a-wado": {"organization": "hosp-a", "base": orthanc.dicom_web, "timeout": 10},
        "hosp-b-wado": {"organization": "hosp-b", "base": flaky.dicom_web, "timeout": BOUND, "connect_timeout": 1},
        "hosp-c-wado": {"organization": "hosp-a", "base": orthanc.dicom_web},  # configured for the wrong hospital
    }
    clock = Clock(T0)
    settings = make_settings(
        tmp_path_factory.mktemp("var"), database.url, dicomweb_endpoints=orjson.dumps(config).decode(),
        dicomweb_decision_seconds=0,
    )  # fmt: skip
    app = create_app(settings, clock=clock)
    ctx: AppContext = app.state.ctx
    setup_region(ctx)
    with TestClient(app) as client:
        api = Api(client, ctx)
        people = {"p1": resident_id(701), "p2": resident_id(702)}
        pa1 = api.patient("hosp-a", "A-701", people["p1"])["id"]
        pb1 = api.patient("hosp-b", "B-701", people["p1"])["id"]
        pa2 = api.patient("hosp-a", "A-702", people["p2"])["id"]
        for org in ("hosp-a", "hosp-b", "hosp-c"):
            _put(api, endpoint(f"{org}-wado", org), f"{org}-system")
        _put(api, endpoint("hosp-a-unlisted", "hosp-a"), "hosp-a-system")
        studies = {
            "ct": make_study(orthanc, "A-701", ct=2, extra_series=1),
            "mr": make_study(orthanc, "A-701", ct=0, mr_frames=3, wide=True),
            "other": make_study(orthanc, "A-702", ct=1),
            "unlisted": make_study(orthanc, "A-701", ct=1),
            "flaky": make_study(flaky, "B-701", ct=1),
        }
        plan = {"ct": (pa1, "hosp-a-wado", "hosp-a"), "mr": (pa1, "hosp-a-wado", "hosp-a"),
                "other": (pa2, "hosp-a-wado", "hosp-a"), "unlisted": (pa1, "hosp-a-unlisted", "hosp-a"),
                "flaky": (pb1, "hosp-b-wado", "hosp-b")}  # fmt: skip
        ids: dict[str, str] = {}
        for name, (patient, ep, org) in plan.items():
            r = api.post("/fhir/ImagingStudy", imaging_study(studies[name], patient, ep), who=f"{org}-system")
            assert r.status_code == 201, r.text
            ids[name] = r.json()["id"]
        secrets = {
            f"patient-{p}": ctx.principals.add(
                PrincipalKind.PATIENT, f"patient-{p}", name, patient_key=ctx.identity.master_key(NATIONAL, people[p])
            ).secret
            for p, name in (("p1", "患者甲"), ("p2", "患者乙"))
        }
        secrets["dr-b"] = ctx.principals.rotate_secret("dr-b")
        yield Region(api, ctx, clock, orthanc, flaky, studies, ids, secrets, {"p1": pa1, "p2": pa2})
    flaky.stop()
    ctx.engine.dispose()


def gw(study: Study, rest: str = "") -> str:
    return f"/dicomweb/studies/{study.uid}{rest}"


def _direct(pacs: Orthanc, path: str, **kw: Any) -> httpx.Response:
    r = httpx.get(f"{pacs.dicom_web}/{path}", timeout=10, **kw)
    r.raise_for_status()
    return r


def _as_gateway(pacs: Orthanc, body: bytes, prefix: str = "http://testserver/dicomweb") -> Any:
    return orjson.loads(body.replace(f"{pacs.dicom_web}/".encode(), f"{prefix}/".encode()))


def _image(r: httpx.Response) -> Image.Image:
    assert r.status_code == 200, r.text
    image = Image.open(BytesIO(r.content))
    image.load()
    return image


def _study_opens(ctx: AppContext, client_id: str, study_id: str) -> list[Any]:
    with ctx.engine.connect() as conn:
        return list(
            conn.execute(
                text("SELECT interaction, outcome, patient_key, purpose, detail FROM audit_event "
                     "WHERE client_id = :c AND resource_type = 'ImagingStudy' AND resource_id = :s "
                     "AND interaction = 'read' ORDER BY pk"),
                {"c": client_id, "s": study_id},
            )
        )  # fmt: skip


# ------------------------------------------------------------------------------------------ what Orthanc answers
def test_qido_through_the_gateway_answers_what_orthanc_answers(region: Region) -> None:
    ct, api = region.studies["ct"], region.api
    series = api.get(gw(ct, "/series"), who="dr-b")
    assert series.status_code == 200, series.text
    assert series.headers["content-type"] == "application/dicom+json"
    assert series.json() == _as_gateway(region.pacs, _direct(region.pacs, f"studies/{ct.uid}/series").content)
    assert len(series.json()) == 2
    first = ct.instances[0]
    instances = api.get(gw(ct, f"/series/{first.series}/instances"), who="dr-b")
    direct = _direct(region.pacs, f"studies/{ct.uid}/series/{first.series}/instances").content
    assert instances.json() == _as_gateway(region.pacs, direct)
    assert {i["00080018"]["Value"][0] for i in instances.json()} == {i.sop for i in ct.instances[:2]}
    assert region.pacs.base.encode() not in series.content + instances.content  # the PACS's address stays inside
    # the studies level: the studies the caller may read, each as Orthanc describes it
    studies = api.get(f"/dicomweb/studies?StudyInstanceUID={ct.uid}", who="dr-b")
    expected = _as_gateway(region.pacs, _direct(region.pacs, f"studies?StudyInstanceUID={ct.uid}").content)
    assert studies.status_code == 200 and studies.json() == expected
    listed = api.get("/dicomweb/studies", who="dr-b").json()
    uids = {s["0020000D"]["Value"][0] for s in listed}
    assert {region.studies[n].uid for n in ("ct", "mr", "unlisted")} - {region.studies["unlisted"].uid} <= uids
    assert region.studies["other"].uid not in uids  # P2 is not in hospital B's care context
    assert region.studies["unlisted"].uid not in uids  # its PACS is not configured: not reachable, not listed
    assert api.get("/dicomweb/studies?limit=1", who="dr-b").json() == listed[:1]


def test_metadata_and_the_instances_themselves_are_orthancs(region: Region) -> None:
    ct, api = region.studies["ct"], region.api
    meta = api.get(gw(ct, "/metadata"), who="patient-p1")
    assert meta.status_code == 200 and meta.headers["cache-control"] == "no-store"
    assert meta.json() == _as_gateway(region.pacs, _direct(region.pacs, f"studies/{ct.uid}/metadata").content)
    one = ct.instances[0]
    series_meta = api.get(gw(ct, f"/series/{one.series}/metadata"), who="patient-p1").json()
    assert {m["00080018"]["Value"][0] for m in series_meta} == {i.sop for i in ct.instances if i.series == one.series}
    r = api.get(f"/dicomweb/{ct.path(one)}", who="patient-p1")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith('multipart/related; type="application/dicom"')
    parts = _parts(r)
    assert len(parts) == 1 and dcmread(BytesIO(parts[0])).SOPInstanceUID == one.sop
    accept = {"Accept": 'multipart/related; type="application/dicom"'}
    assert parts == _parts(_direct(region.pacs, ct.path(one), headers=accept))
    whole = _parts(api.get(gw(ct), who="patient-p1"))
    assert sorted(dcmread(BytesIO(p)).SOPInstanceUID for p in whole) == sorted(i.sop for i in ct.instances)


def _parts(r: httpx.Response) -> list[bytes]:
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {r.headers['content-type']}\r\n\r\n".encode() + r.content
    )
    return [part.get_payload(decode=True) for part in message.iter_parts()]  # type: ignore[attr-defined]


def test_rendered_frames_decode_to_images_of_the_right_size(region: Region) -> None:
    ct, mr, api = region.studies["ct"], region.studies["mr"], region.api
    one = ct.instances[0]
    jpeg = _image(api.get(f"/dicomweb/{ct.path(one)}/frames/1/rendered", who="dr-b"))
    assert jpeg.format == "JPEG" and jpeg.size == (one.columns, one.rows) == (128, 128)
    png = _image(api.get(f"/dicomweb/{ct.path(one)}/rendered", who="dr-b", headers={"Accept": "image/png"}))
    assert png.format == "PNG" and png.size == (128, 128)
    small = _image(api.get(f"/dicomweb/{ct.path(one)}/frames/1/rendered?viewport=64,64", who="dr-b"))
    assert small.size == (64, 64)
    lung = api.get(f"/dicomweb/{ct.path(one)}/frames/1/rendered?window=-600,1500,linear", who="dr-b")
    bone = api.get(f"/dicomweb/{ct.path(one)}/frames/1/rendered?window=300,2000,linear", who="dr-b")
    assert _image(lung).size == (128, 128) and lung.content != bone.content
    assert lung.headers["cache-control"] == "private, max-age=300" and "Cookie" in lung.headers["vary"]
    # a multi-frame instance: frames 1…3 (DICOMweb counts from 1), each its own image
    multi = mr.instances[0]
    frames = [api.get(f"/dicomweb/{mr.path(multi)}/frames/{n}/rendered", who="dr-b") for n in (1, 2, 3)]
    assert [_image(f).size for f in frames] == [(64, 64)] * 3
    assert len({f.content for f in frames}) == 3
    zero = api.get(f"/dicomweb/{mr.path(multi)}/frames/0/rendered", who="dr-b")
    assert zero.status_code == 400 and "count from 1" in zero.json()["issue"][0]["diagnostics"]
    past = api.get(f"/dicomweb/{mr.path(multi)}/frames/4/rendered", who="dr-b")
    assert past.status_code == 400 and past.json()["resourceType"] == "OperationOutcome"
    # thumbnails: study, series, instance, frame
    for rest in ("/thumbnail", f"/series/{one.series}/thumbnail", f"/series/{one.series}/instances/{one.sop}/thumbnail",
                 f"/series/{one.series}/instances/{one.sop}/frames/1/thumbnail"):  # fmt: skip
        thumb = _image(api.get(gw(ct, rest), who="dr-b"))
        assert max(thumb.size) <= 128 and thumb.format == "JPEG", rest
    # a thumbnail keeps the image's shape (Orthanc stretches a rendered image to the viewport it is given)
    wide = mr.instances[-1]
    assert (wide.columns, wide.rows) == (128, 64)
    for rest in (f"/series/{wide.series}/thumbnail", f"/series/{wide.series}/instances/{wide.sop}/thumbnail",
                 f"/series/{wide.series}/instances/{wide.sop}/frames/1/thumbnail"):  # fmt: skip
        assert _image(api.get(gw(mr, rest), who="dr-b")).size == (128, 64), rest
    asked = _image(api.get(gw(mr, f"/series/{wide.series}/instances/{wide.sop}/thumbnail?viewport=50,50"), who="dr-b"))
    assert asked.size == (50, 50)  # a viewport the caller gives is forwarded as given


def test_head_is_the_get_without_its_body(region: Region) -> None:
    ct, api = region.studies["ct"], region.api
    one = ct.instances[0]
    path = f"/dicomweb/{ct.path(one)}/frames/1/rendered"
    got = api.get(path, who="dr-b")
    head = api.client.head(path, headers=api.headers("dr-b"))
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == got.headers["content-type"] == "image/jpeg"
    assert head.headers["content-length"] == str(len(got.content))
    series = api.client.head(gw(ct, "/series"), headers=api.headers("dr-b"))
    assert series.status_code == 200 and series.headers["content-type"].startswith("application/dicom+json")
    assert api.client.head(path).status_code == 401  # the same access decision as GET
    assert api.client.head(path, headers=api.headers("patient-p2")).status_code == 403


@pytest.mark.parametrize(
    ("query", "accept", "status", "says"),
    [
        ("window=40,400", None, 400, "three values"),
        ("window=40,400,cubic", None, 400, "not one of"),
        ("window=40,0,linear", None, 400, "at least 1"),
        ("viewport=64", None, 400, "2 or 6"),
        ("viewport=0,0", None, 400, "between 1 and"),
        ("viewport=64,64,0,0,0,10", None, 400, "not 0"),
        ("quality=0", None, 400, "1 to 100"),
        ("annotation=patient", None, 400, "not a rendered-image parameter"),
        ("", "image/gif", 406, "image/jpeg or image/png"),
    ],
)
def test_rendering_parameters_are_checked_before_forwarding(
    region: Region, query: str, accept: str | None, status: int, says: str
) -> None:
    ct = region.studies["ct"]
    headers = {"Accept": accept} if accept else {}
    r = region.api.get(f"/dicomweb/{ct.path(ct.instances[0])}/frames/1/rendered?{query}", who="dr-b", headers=headers)
    assert r.status_code == status, r.text
    assert says in r.json()["issue"][0]["diagnostics"]


# ------------------------------------------------------------------------------------------ who may see what
def test_outside_the_care_context_is_403_and_no_bytes(region: Region) -> None:
    ct, api = region.studies["ct"], region.api
    one = ct.instances[0]
    paths = [gw(ct, "/series"), gw(ct, "/metadata"), gw(ct), f"/dicomweb/{ct.path(one)}/frames/1/rendered",
             gw(ct, "/thumbnail"), f"/dicomweb/{ct.path(one)}"]  # fmt: skip
    for who in ("dr-c", "hosp-c-system", "patient-p2"):
        for path in paths:
            r = api.get(path, who=who)
            assert r.status_code == 403, (who, path, r.status_code)
            assert r.headers["content-type"].startswith("application/fhir+json")
            assert r.json()["resourceType"] == "OperationOutcome" and b"\xff\xd8" not in r.content
            assert "hosp-a" not in r.text and region.patients["p1"] not in r.text
    listed = api.get("/dicomweb/studies", who="dr-c")
    assert listed.status_code == 200 and listed.json() == []
    assert api.get(f"/dicomweb/studies?StudyInstanceUID={ct.uid}", who="patient-p2").json() == []
    # break-glass opens it, audited with purpose of use BTG
    r = api.get(f"/dicomweb/{ct.path(one)}/frames/1/rendered", who="dr-c", headers=BTG)
    assert _image(r).size == (128, 128) and r.headers["cache-control"] == "no-store"
    rows = _study_opens(region.ctx, "dr-c", region.ids["ct"])
    assert [(r.outcome, r.purpose) for r in rows if r.outcome == "0"] == [("0", "BTG")]
    no_token = api.get(gw(ct, "/series"), who=None)
    assert no_token.status_code == 401


def test_a_series_or_instance_of_another_study_is_not_found(region: Region) -> None:
    ct, other, api = region.studies["ct"], region.studies["other"], region.api
    foreign = other.instances[0]
    # Orthanc refuses it too; the gateway checks it itself, against the PACS's answer for the study it opened
    assert httpx.get(f"{region.pacs.dicom_web}/studies/{ct.uid}/series/{foreign.series}/metadata").status_code == 404
    for rest in (f"/series/{foreign.series}/instances", f"/series/{foreign.series}/metadata",
                 f"/series/{foreign.series}/instances/{foreign.sop}/frames/1/rendered",
                 f"/series/{ct.instances[0].series}/instances/{foreign.sop}/rendered",
                 f"/series/{ct.instances[2].series}/instances/{ct.instances[0].sop}/rendered"):  # fmt: skip
        r = api.get(gw(ct, rest), who="patient-p1")
        assert r.status_code == 404, (rest, r.text)
        assert "is not part of" in r.json()["issue"][0]["diagnostics"]
    # nor can a match key widen a query past the study in the path
    widened = api.get(gw(ct, f"/series?StudyInstanceUID={other.uid}"), who="patient-p1")
    assert widened.status_code == 400


def test_consent_paused_with_a_hospital_closes_its_viewer(region: Region) -> None:
    ct, api = region.studies["ct"], region.api
    path = f"/dicomweb/{ct.path(ct.instances[0])}/frames/1/rendered"
    assert api.get(path, who="dr-b").status_code == 200
    session = _session(region, "portal", "patient-p1")
    form = session.get("/portal/consent")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf
    paused = session.post("/portal/consent", data={"action": "pause", "org": "hosp-b", "csrf": csrf.group(1)})
    assert paused.status_code in (200, 303), paused.text[:300]
    try:
        r = api.get(path, who="dr-b")
        assert r.status_code == 403 and "restricted sharing" in r.text
        assert api.get(path, who="hosp-a-system").status_code == 200  # the issuer always sees its own
    finally:
        form = session.get("/portal/consent")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf
        session.post("/portal/consent", data={"action": "resume", "org": "hosp-b", "csrf": csrf.group(1)})
    assert api.get(path, who="dr-b").status_code == 200


def _session(region: Region, area: str, account: str) -> TestClient:
    client = TestClient(region.api.client.app, follow_redirects=False)
    form = client.get(f"/{area}/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf
    r = client.post(f"/{area}/login", data={"account": account, "secret": region.secrets[account],
                                            "csrf": csrf.group(1)})  # fmt: skip
    assert r.status_code == 303, r.text[:300]
    return client


def test_each_study_opened_is_one_audit_event_shown_to_the_patient(region: Region) -> None:
    mr, ct, api = region.studies["mr"], region.studies["ct"], region.api
    multi = mr.instances[0]
    for _ in range(2):
        assert api.get(gw(mr, "/series"), who="dr-b").status_code == 200
        assert api.get(gw(mr, f"/series/{multi.series}/thumbnail"), who="dr-b").status_code == 200
        for n in (1, 2, 3):
            assert api.get(f"/dicomweb/{mr.path(multi)}/frames/{n}/rendered", who="dr-b").status_code == 200
    rows = _study_opens(region.ctx, "dr-b", region.ids["mr"])
    assert len(rows) == 1, rows
    key = region.ctx.identity.master_key(NATIONAL, resident_id(701))
    assert rows[0].outcome == "0" and rows[0].patient_key == key and rows[0].purpose is None
    # an hour later it is a new opening
    region.clock.now += timedelta(hours=1)
    try:
        assert api.get(f"/dicomweb/{mr.path(multi)}/frames/1/rendered", who="dr-b").status_code == 200
        assert len(_study_opens(region.ctx, "dr-b", region.ids["mr"])) == 2
    finally:
        region.clock.now -= timedelta(hours=1)
    # two registry processes on one database, opening the same study at once: still one row
    twin = create_app(region.ctx.settings, clock=region.clock)
    try:
        results: list[int] = []
        with TestClient(twin) as other:
            token = region.api.token_for("hosp-b-system")

            def fetch(client: TestClient) -> None:
                r = client.get(f"/dicomweb/{ct.path(ct.instances[0])}/rendered",
                               headers={"Authorization": f"Bearer {token}"})  # fmt: skip
                results.append(r.status_code)

            threads = [threading.Thread(target=fetch, args=(c,)) for c in (api.client, other, api.client, other)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert results == [200] * 4
        assert len(_study_opens(region.ctx, "hosp-b-system", region.ids["ct"])) == 1
    finally:
        twin.state.ctx.engine.dispose()
    # the patient sees who viewed the images
    page = _session(region, "portal", "patient-p1").get("/portal/access")
    assert page.status_code == 200
    assert "医生 B" in page.text and "查看了您的影像检查图像" in page.text


def test_the_pages_mirror_the_api_for_their_session(region: Region) -> None:
    ct = region.studies["ct"]
    one = ct.instances[0]
    frame = f"studies/{ct.uid}/series/{one.series}/instances/{one.sop}/frames/1/rendered"
    patient = _session(region, "portal", "patient-p1")
    assert _image(patient.get(f"/portal/dicomweb/{frame}")).size == (128, 128)
    series = patient.get(f"/portal/dicomweb/studies/{ct.uid}/series")
    assert series.status_code == 200 and b"http://testserver/portal/dicomweb/studies/" in series.content
    anonymous = TestClient(region.api.client.app, follow_redirects=False)
    refused = anonymous.get(f"/portal/dicomweb/{frame}")
    assert refused.status_code == 401 and refused.json()["resourceType"] == "OperationOutcome"
    assert patient.get(f"/clinician/dicomweb/{frame}").status_code == 401  # not signed in to that area
    clinician = _session(region, "clinician", "dr-b")
    assert _image(clinician.get(f"/clinician/dicomweb/{frame}")).size == (128, 128)
    other = region.studies["other"]
    o = other.instances[0]
    path = f"/clinician/dicomweb/studies/{other.uid}/series/{o.series}/instances/{o.sop}/frames/1/rendered"
    assert clinician.get(path).status_code == 403  # P2 is outside B's care context
    opened = clinician.get(path, headers=BTG)  # the break-glass headers, as the viewer sends them
    assert _image(opened).size == (128, 128)
    assert opened.headers["cache-control"] == "no-store"


# ------------------------------------------------------------------------------------------ what is not reachable
def test_a_study_whose_pacs_is_not_configured_is_502_not_reachable(region: Region) -> None:
    unlisted = region.studies["unlisted"]
    r = region.api.get(gw(unlisted, "/series"), who="patient-p1")
    assert r.status_code == 502
    assert "not reachable through the registry" in r.json()["issue"][0]["diagnostics"]
    assert region.pacs.base not in r.text


def test_a_study_naming_another_hospitals_endpoint_is_not_forwarded(region: Region) -> None:
    """Hospital A may name any Endpoint in its ImagingStudy (the registry stores it), but the gateway forwards only
    to an Endpoint managed by the study's own issuer: A's study naming C's ``hosp-c-wado`` (configured, even, as A's
    PACS) is a 502 "not managed by the hospital that issued the study", and nothing is fetched."""
    api = region.api
    body = imaging_study(region.studies["ct"], region.patients["p1"], "hosp-c-wado")
    body["identifier"][0]["value"] = "urn:oid:2.25.1234567"
    assert api.post("/fhir/ImagingStudy", body, who="hosp-a-system").status_code == 201
    opened = api.get("/dicomweb/studies/2.25.1234567/series", who="patient-p1")
    assert opened.status_code == 502 and "not managed by the hospital" in opened.text


def test_a_hung_or_stopped_pacs_is_a_clear_504_or_502_within_the_bound(region: Region) -> None:
    flaky, api = region.studies["flaky"], region.api
    one = flaky.instances[0]
    path = f"/dicomweb/{flaky.path(one)}/frames/1/rendered"
    assert _image(api.get(path, who="hosp-b-system")).size == (128, 128)
    proc = region.flaky.proc
    assert proc is not None
    proc.send_signal(19)  # SIGSTOP: the PACS still accepts connections (the kernel does) but answers nothing
    try:
        started = time.monotonic()
        r = api.get(path + "?viewport=100,100", who="hosp-b-system")
        took = time.monotonic() - started
        assert r.status_code == 504, r.text
        assert r.json()["issue"][0]["code"] == "timeout" and took < BOUND + 1.5, took
        started = time.monotonic()
        hung_meta = api.get(f"/dicomweb/studies/{flaky.uid}/metadata", who="hosp-b-system")
        assert hung_meta.status_code == 504 and time.monotonic() - started < BOUND + 1.5
    finally:
        proc.send_signal(18)  # SIGCONT
    region.flaky.stop()
    started = time.monotonic()
    r = api.get(path, who="hosp-b-system")
    assert r.status_code == 502, r.text
    assert "cannot be reached" in r.json()["issue"][0]["diagnostics"] and time.monotonic() - started < BOUND
    assert region.flaky.base not in r.text
    # the rest of the registry is unaffected
    assert api.get(gw(region.studies["ct"], "/series"), who="hosp-b-system").status_code == 200


def test_a_file_holds_the_endpoint_configuration(tmp_path: Path) -> None:
    from registry.services.imaging import PacsConfigError, PacsDirectory

    path = tmp_path / "pacs.json"
    path.write_text('{"e1": {"organization": "hosp-a", "base": "http://127.0.0.1:1/dicom-web", "username": "u", '
                    '"password": "p"}}')  # fmt: skip
    found = PacsDirectory.parse(str(path)).find("e1", None)
    assert found is not None and found.headers == (("Authorization", "Basic dTpw"),)
    with pytest.raises(PacsConfigError):
        PacsDirectory.parse(str(tmp_path / "missing.json"))
