"""Privacy without loopholes (docs/design.md §4, §6), one test per way a national identifier or a name used to slip out:
JSON-escaped identifiers stored in clear, identifiers as resource ids or hospital identifiers, percent-encoded and
passport identifiers and names in the access log, the registry's own log lines, SQL parameters in error logs, and
the SQLite file's mode."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from registry.app import build_context, create_app
from tests.conftest import ROOT, free_port, stop_process, wait_until_healthy
from tests.integration.conftest import NATIONAL, Api, make_settings, resident_id, unique
from tests.integration.privacy_checks import access_record, audit_text, database_text, leaks, log_text

PASSPORT = "https://hr-registry.org.cn/fhir/sid/passport"
NAME = "司马相如"


def escaped(value: str, *, upper: bool = False) -> str:
    """Every character as a JSON ``\\uXXXX`` escape (RFC 8259 §7)."""
    return "".join(f"\\u{ord(c):04X}" if upper else f"\\u{ord(c):04x}" for c in value)


def resident_id_with_x(start: int) -> str:
    """A synthetic resident ID whose GB 11643 check character is X."""
    return next(nid for seed in range(start, start + 500) if (nid := resident_id(seed)).endswith("X"))


def shown(nid: str) -> str:
    return nid[:3] + "*" * (len(nid) - 7) + nid[-4:]


# ---------------------------------------------------------------------------------------------------- stored text
def test_a_national_id_written_with_json_escapes_is_stored_and_served_masked(api: Api) -> None:
    nid = resident_id_with_x(400)
    spelled = {
        "@MRN@": unique("A"),
        "@ESCAPED@": escaped(nid),
        "@UPPER@": escaped(nid, upper=True),
        "@LOWER@": nid.lower(),
        "@REFS@": "".join(f"&#{ord(c)};" for c in nid),
        "@MIXED@": escaped(nid[:9]) + nid[9:-1] + escaped(nid[-1].lower()),
    }
    body = (
        '{"resourceType": "Patient",\n  "identifier": ['
        '{"system": "http://hosp-a.example/mrn", "value": "@MRN@"}, '
        f'{{"system": "{NATIONAL}", "value": "@ESCAPED@"}}],\n'
        '  "text": {"status": "generated", "div": "<div xmlns=\\"http://www.w3.org/1999/xhtml\\">'
        '\\u8eab\\u4efd\\u8bc1 @UPPER@, @LOWER@, @REFS@</div>"},\n'
        '  "name": [{"text": "\\u5f20\\u4e09"}],\n'
        '  "extension": [{"url": "http://hosp-a.example/ext/weight", "valueDecimal": 135.50},\n'
        '                {"url": "http://hosp-a.example/ext/note", "valueString": "ID:@MIXED@"}],\n'
        '  "managingOrganization": {"reference": "Organization/hosp-a"}}'
    )
    for placeholder, value in spelled.items():
        body = body.replace(placeholder, value)
    r = api.post("/fhir/Patient", body, who="hosp-a-system")
    assert r.status_code == 201, r.text
    served = api.get(f"/fhir/Patient/{r.json()['id']}").text
    assert leaks(served, [nid]) == [] and leaks(orjson.dumps(orjson.loads(served)).decode(), [nid]) == []
    assert leaks(database_text(api.ctx.engine), [nid]) == []
    patient = orjson.loads(served)
    assert [i["value"] for i in patient["identifier"] if i["system"] == NATIONAL] == [shown(nid)]
    assert patient["extension"][1]["valueString"] == f"ID:{shown(nid)}"
    assert patient["text"]["div"].count(shown(nid)) == 3
    # every other byte as it was sent: the decimal as written, the untouched escapes, the whitespace
    assert '"valueDecimal": 135.50}' in served
    assert '"name": [{"text": "\\u5f20\\u4e09"}]' in served
    assert ',\n                {"url": "http://hosp-a.example/ext/note"' in served
    # and the person is still found by the number, in any spelling
    for spelling in (nid, nid.lower(), f" {nid} "):
        found = api.get("/fhir/Patient", params={"identifier": f"{NATIONAL}|{spelling}"}).json()
        assert [e["resource"]["id"] for e in found["entry"]] == [patient["id"]]


def test_a_passport_number_is_masked_in_the_narrative_whatever_the_case_of_its_spelling(api: Api) -> None:
    passport = "PK7734510"
    lower = "".join(f"&#{ord(c.lower())};" for c in passport[:2]) + passport[2:]
    percent = "".join(f"%{ord(c.lower()):02x}" for c in passport[:2]) + passport[2:]
    body = {
        "resourceType": "Patient",
        "identifier": [
            {"system": "http://hosp-a.example/mrn", "value": unique("A")},
            {"system": PASSPORT, "value": passport.lower()},
        ],
        "text": {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{lower} {percent}</div>'},
        "managingOrganization": {"reference": "Organization/hosp-a"},
    }
    r = api.post("/fhir/Patient", body, who="hosp-a-system")
    assert r.status_code == 201, r.text
    served = api.get(f"/fhir/Patient/{r.json()['id']}").json()
    assert served["text"]["div"].count("*******10") == 2, served["text"]["div"]
    assert leaks(database_text(api.ctx.engine), [passport]) == []


def test_a_reference_written_with_escapes_is_resolved_without_leaking_the_number_or_its_key(api: Api) -> None:
    # an absolute reference is stored relative; written with an escape it is not found as text, and the resource
    # is then serialized from its parsed form — which must be masked too, and never carry the keyed hash
    nid = resident_id(405)
    base = api.ctx.settings.fhir_base_url
    body = (
        '{"resourceType": "Patient", "identifier": [{"system": "http://hosp-a.example/mrn", "value": "@MRN@"},'
        f' {{"system": "{NATIONAL}", "value": "{nid}"}}],'
        f' "text": {{"status": "generated", "div": "<div xmlns=\\"http://www.w3.org/1999/xhtml\\">{escaped(nid)}</div>"}},'
        f' "managingOrganization": {{"reference": "{escaped(base)}/Organization/hosp-a"}}}}'
    ).replace("@MRN@", unique("A"))
    r = api.post("/fhir/Patient", body, who="hosp-a-system")
    assert r.status_code == 201, r.text
    served = api.get(f"/fhir/Patient/{r.json()['id']}").json()
    assert served["managingOrganization"] == {"reference": "Organization/hosp-a"}
    assert "_key" not in orjson.dumps(served).decode()
    assert leaks(orjson.dumps(served).decode(), [nid]) == [] and shown(nid) in served["text"]["div"]
    assert leaks(database_text(api.ctx.engine), [nid]) == []


def test_a_national_id_as_a_resource_id_is_refused(api: Api) -> None:
    nid = resident_id(410)
    other = resident_id(411)
    body = {
        "resourceType": "Patient",
        "id": nid,
        "identifier": [
            {"system": "http://hosp-a.example/mrn", "value": unique("A")},
            {"system": NATIONAL, "value": nid},
        ],
        "managingOrganization": {"reference": "Organization/hosp-a"},
    }
    r = api.put(f"/fhir/Patient/{nid}", body, who="hosp-a-system")
    assert r.status_code == 400, r.text
    assert "resource id must not be a national identifier" in r.text
    body["id"] = other  # any valid resident ID number, not only the patient's own
    r = api.put(f"/fhir/Patient/{other}", body, who="hosp-a-system")
    assert r.status_code == 400, r.text
    assert api.get(f"/fhir/Patient/{nid}").status_code == 404
    assert leaks(database_text(api.ctx.engine), [nid, other]) == []


def test_a_hospital_identifier_holding_the_national_id_is_refused(api: Api) -> None:
    nid = resident_id(412)
    body = {
        "resourceType": "Patient",
        "identifier": [{"system": "http://hosp-a.example/mrn", "value": nid}, {"system": NATIONAL, "value": nid}],
        "managingOrganization": {"reference": "Organization/hosp-a"},
    }
    r = api.post("/fhir/Patient", body, who="hosp-a-system")
    assert r.status_code == 400, r.text
    assert "Patient.identifier[0]" in r.text
    assert leaks(database_text(api.ctx.engine), [nid]) == []


# ---------------------------------------------------------------------------------------------------- logs
def test_the_access_log_masks_national_ids_in_any_encoding_and_hides_names(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    nid, passport = resident_id(420), "PK7734521"
    api.patient("hosp-a", unique("A"), nid)
    targets = [
        f"/fhir/DiagnosticReport?patient.identifier={quote(f'{NATIONAL}|{nid}', safe='')}",
        f"/fhir/Patient?identifier={quote(NATIONAL, safe='')}%7C{''.join(f'%{ord(c):02X}' for c in nid)}",
        f"/fhir/Patient?identifier={quote(f'{PASSPORT}|{passport}', safe='')}",
        f"/fhir/Observation?subject:Patient.identifier={PASSPORT}|{passport.lower()}&_count=5",
        f"/fhir/Patient?identifier:not=http://x%7C1,{quote(PASSPORT, safe='')}%7C{passport}",
        f"/fhir/Patient/$ihe-pix?sourceIdentifier={quote(f'{PASSPORT}|{passport}')}",
        f"/fhir/Patient?name={quote(NAME)}&family={quote(NAME[:2])}&given:exact={quote(NAME[2:])}",
        f"/fhir/DiagnosticReport?patient.name:contains={quote(NAME)}",
        f"/fhir/Patient?whatever={quote(f'{PASSPORT}|{passport}', safe='')}",
    ]
    with caplog.at_level(logging.DEBUG):
        for target in targets:
            r = api.client.get(target, headers=api.headers("admin", **{"Prefer": "handling=lenient"}))
            assert r.status_code < 500, r.text
            access_record("GET", target, r.status_code)
    lines = log_text(r for r in caplog.records if r.name == "uvicorn.access")
    assert lines.count("HTTP/1.1") >= len(targets)
    assert leaks(lines, [nid, passport, NAME, NAME[:2], NAME[2:]]) == [], lines
    assert f"{PASSPORT}|*******21" in lines and "name=***" in lines and "family=***" in lines
    # the audit trail keeps who searched for what, with the identifiers masked
    events = api.get("/fhir/AuditEvent", params={"agent": "admin", "_count": "50"}).json()["entry"]
    assert leaks(audit_text(e["resource"] for e in events), [nid, passport]) == []


def test_a_national_id_spelled_with_separators_is_masked_in_the_audit_trail_and_the_log(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    nid = resident_id(422)
    target = f"/fhir/Patient/{nid[:6]}%20{nid[6:14]}-{nid[14:]}"
    with caplog.at_level(logging.DEBUG):
        r = api.client.get(target, headers=api.headers("admin", **{"X-Request-Id": "spaced-id-read"}))
        assert r.status_code in (400, 404), r.text
        access_record("GET", target, r.status_code)
    with api.ctx.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM audit_event WHERE request_id = 'spaced-id-read'")).all()
    assert rows and leaks(" ".join(str(v) for row in rows for v in row), [nid, f"{nid[:6]} {nid[6:14]}"]) == []
    assert leaks(log_text(caplog.records), [nid, f"{nid[:6]} {nid[6:14]}"]) == []


def test_the_registry_log_masks_passports_and_national_tokens(caplog: pytest.LogCaptureFixture, api: Api) -> None:
    nid, passport = resident_id(421), "PK7734522"
    with caplog.at_level(logging.DEBUG):
        log = logging.getLogger("registry")
        log.warning("lookup %s failed", f"{PASSPORT}|{passport}")
        log.warning(f"lookup {quote(NATIONAL, safe='')}%7C{nid} failed")
        log.info("identifiers %s", {"system": PASSPORT, "value": passport, "text": f"{PASSPORT}|{passport}"})
    lines = log_text(caplog.records)
    assert leaks(lines, [nid, f"{PASSPORT}|{passport}"]) == [], lines


def test_sql_error_logs_carry_no_parameters(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    passport = "PK7734523"
    app = api.client.app

    def boom() -> None:
        with api.ctx.engine.connect() as conn:
            conn.execute(text("INSERT INTO no_such_table (a, b) VALUES (:name, :passport)"),
                         {"name": NAME, "passport": passport})  # fmt: skip

    app.add_api_route("/_test/sql-error", boom)  # type: ignore[attr-defined]
    with caplog.at_level(logging.DEBUG), TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/_test/sql-error")
        assert r.status_code == 500
        assert NAME not in r.text and "INSERT" not in r.text
        try:
            boom()
        except Exception as exc:  # what uvicorn logs for an exception that left the app
            logging.getLogger("uvicorn.error").error("Exception in ASGI application\n", exc_info=exc)
    lines = log_text(caplog.records)
    assert leaks(lines, [NAME, passport]) == [], lines
    assert "unhandled error in GET /_test/sql-error" in lines and "Traceback" in lines
    assert "Exception in ASGI application" in lines
    assert api.ctx.engine.hide_parameters


# ---------------------------------------------------------------------------------------------------- a live server
@pytest.fixture(scope="module")
def live_log(api: Api) -> Iterator[tuple[str, Path]]:
    """The registry served by uvicorn (access log on, as the README runs it) on this module's database."""
    settings = api.ctx.settings
    port = free_port()
    log_path = settings.var_dir / "access.log"
    env = {**os.environ, "REGISTRY_VAR_DIR": str(settings.var_dir), "REGISTRY_DATABASE_URL": str(settings.database_url),
           "REGISTRY_PUBLIC_BASE_URL": settings.public_base_url, "REGISTRY_IDENTITY_SECRET": "test-identity-secret",
           "REGISTRY_RATE_LIMIT_PER_SECOND": "0"}  # fmt: skip
    argv = [sys.executable, "-m", "uvicorn", "registry.app:create_app", "--factory", "--port", str(port),
            "--log-level", "info"]  # fmt: skip
    with log_path.open("ab") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    wait_until_healthy(proc, f"http://127.0.0.1:{port}", log_path, 60)
    try:
        yield f"http://127.0.0.1:{port}", log_path
    finally:
        stop_process(proc, 10)


def test_a_live_server_writes_no_national_id_nor_name_in_its_access_log(api: Api, live_log: tuple[str, Path]) -> None:
    base, log_path = live_log
    nid, passport = resident_id(430), "PK7734524"
    headers = {"Authorization": f"Bearer {api.token_for('admin')}"}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for params in (
            {"patient.identifier": f"{NATIONAL}|{nid}"},  # httpx sends | as %7C
            {"patient.identifier": f"{PASSPORT}|{passport}"},
            {"patient.name": NAME},
        ):
            assert client.get("/fhir/DiagnosticReport", params=params).status_code == 200
        assert client.get(f"/fhir/Patient/{nid}").status_code in (400, 404)
    written = log_path.read_text(encoding="utf-8", errors="replace")
    assert leaks(written, [nid, passport, NAME]) == [], written
    assert written.count("GET /fhir/") >= 4, written


# ---------------------------------------------------------------------------------------------------- the SQLite file
def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_sqlite_database_is_created_readable_by_its_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        var = tmp_path / "new-var"
        ctx = build_context(make_settings(var, f"sqlite:///{var}/db/registry.sqlite3"))
        ctx.engine.dispose()
        database = var / "db" / "registry.sqlite3"
        assert (_mode(var), _mode(var / "db"), _mode(database), _mode(var / "keys")) == (0o700, 0o700, 0o600, 0o700)
        # an existing file left world-readable (and its write-ahead log) is tightened on start
        loose = tmp_path / "loose.sqlite3"
        build_context(make_settings(tmp_path / "var2", f"sqlite:///{loose}")).engine.dispose()
        for path in (loose, Path(f"{loose}-wal")):
            path.touch()
            path.chmod(0o644)
        app = create_app(make_settings(tmp_path / "var2", f"sqlite:///{loose}"))
        with app.state.ctx.engine.begin() as conn:
            conn.execute(text("SELECT count(*) FROM resource"))
            companions = [p for p in tmp_path.iterdir() if p.name.startswith("loose.sqlite3")]
            assert {p.name for p in companions} >= {"loose.sqlite3", "loose.sqlite3-wal", "loose.sqlite3-shm"}
            assert {p.name: _mode(p) for p in companions} == {p.name: 0o600 for p in companions}
        app.state.ctx.engine.dispose()
    finally:
        os.umask(old)
