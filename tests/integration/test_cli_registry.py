"""`hr-registry db|clients|token|demo` as an operator runs them (against a fresh SQLite state directory)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from registry.app import create_app
from registry.cli import app
from registry.settings import Settings
from registry.store import migrate

runner = CliRunner()


@pytest.fixture
def var(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REGISTRY_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("REGISTRY_IDENTITY_SECRET", "cli-test-secret")
    monkeypatch.delenv("REGISTRY_DATABASE_URL", raising=False)
    return tmp_path


def _secret(output: str) -> str:
    line = next(line for line in output.splitlines() if "client_secret" in line)
    return line.split()[1]


def test_db_upgrade_and_current(var: Path) -> None:
    r = runner.invoke(app, ["db", "upgrade"])
    assert r.exit_code == 0, r.output
    head = migrate.head_revision()
    assert f"→ {head}" in r.output.replace("\n", "")
    assert (var / "registry.sqlite3").exists()
    r = runner.invoke(app, ["db", "current"])
    assert f"current {head}, head {head}" in r.output


def test_clients_and_tokens_work_against_the_registry(var: Path) -> None:
    r = runner.invoke(app, ["clients", "add-hospital", "hosp-x", "--name", "X 示范医院", "--region", "beijing"])
    assert r.exit_code == 0, r.output
    assert "hosp-x-system" in r.output
    secret = _secret(r.output)
    r = runner.invoke(app, ["clients", "add-clinician", "dr-x", "--org", "hosp-x", "--name", "医生 X"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["clients", "add-patient", "pat-x", "--national-id", "11010519491231002X"])
    assert r.exit_code == 0, r.output
    assert "11010519491231002X" not in r.output
    r = runner.invoke(app, ["clients", "add-patient", "pat-y", "--national-id", "110105194912310021"])
    assert r.exit_code == 1
    assert "check digit" in r.output
    r = runner.invoke(app, ["clients", "add-clinician", "dr-x", "--org", "hosp-x", "--name", "again"])
    assert r.exit_code == 1
    assert "already exists" in r.output
    r = runner.invoke(app, ["clients", "list"])
    assert "hosp-x-system" in r.output
    assert secret not in r.output
    r = runner.invoke(app, ["token", "dr-x"])
    assert r.exit_code == 0
    token = r.output.strip()
    r = runner.invoke(app, ["token", "nobody"])
    assert r.exit_code == 1

    registry = create_app(Settings(var_dir=var, identity_secret="cli-test-secret"))  # the issuer the CLI used
    with TestClient(registry) as client:
        org = client.get("/fhir/Organization/hosp-x", headers={"Authorization": f"Bearer {token}"})
        assert org.status_code == 200
        assert org.json()["name"] == "X 示范医院"
        issued = client.post(
            "/auth/token",
            data={"grant_type": "client_credentials", "client_id": "hosp-x-system", "client_secret": secret},
        )
        assert issued.status_code == 200, issued.text
        assert issued.json()["token_type"] == "Bearer"


def test_demo_load_is_idempotent(var: Path) -> None:
    r = runner.invoke(app, ["demo", "load", "--patients", "6"])
    assert r.exit_code == 0, r.output
    settings = Settings(var_dir=var, public_base_url="http://testserver", identity_secret="cli-test-secret")
    registry = create_app(settings)
    ctx = registry.state.ctx
    admin = ctx.principals.add(__import__("registry.auth").auth.PrincipalKind.ADMIN, "adm", "adm")
    token = ctx.principals.token(admin.principal).access_token
    headers = {"Authorization": f"Bearer {token}"}

    def counts(client: httpx.Client | TestClient) -> dict[str, int]:
        return {
            t: client.get(f"/fhir/{t}", params={"_summary": "count"}, headers=headers).json()["total"]
            for t in ("Organization", "Patient", "DiagnosticReport", "Observation", "ImagingStudy", "Endpoint")
        }

    with TestClient(registry) as client:
        first = counts(client)
        assert first["Organization"] == 5
        assert first["DiagnosticReport"] > 6
        r = runner.invoke(app, ["demo", "load", "--patients", "6"])
        assert r.exit_code == 0, r.output
        assert counts(client) == first
        r = runner.invoke(app, ["demo", "patient"])
        nid = r.output.strip().split("|")[1]
        both = client.get("/fhir/Patient", params={"identifier": r.output.strip()}, headers=headers).json()
        mrns = sorted(i["value"] for e in both["entry"] for i in e["resource"]["identifier"] if "mrn" in i["system"])
        assert mrns == ["A-123", "B-9"]
        assert nid not in client.get(f"/fhir/Patient/{both['entry'][0]['resource']['id']}", headers=headers).text


def test_codes_qualifications_and_index_commands(var: Path, tmp_path: Path) -> None:
    assert (
        runner.invoke(app, ["clients", "add-hospital", "hosp-q", "--name", "Q 医院", "--region", "beijing"]).exit_code
        == 0
    )
    csv = tmp_path / "codes.csv"
    csv.write_text(
        "system,code,item,display\nhttp://hosp-q/codes,XCG,L001,血常规\nhttp://hosp-q/codes,HB,718-7,\n"
        "http://hosp-q/codes,CT1,JC-CT-032,胸部CT平扫\n",
        encoding="utf-8",
    )
    r = runner.invoke(app, ["codes", "import", str(csv), "--org", "hosp-q"])
    assert r.exit_code == 0, r.output
    assert "3 local codes of hosp-q mapped" in r.output
    bad = tmp_path / "bad.csv"
    bad.write_text("http://hosp-q/codes,X,NOT-AN-ITEM\n", encoding="utf-8")
    r = runner.invoke(app, ["codes", "import", str(bad), "--org", "hosp-q"])
    assert r.exit_code == 1
    assert "not a catalog item" in r.output

    r = runner.invoke(
        app,
        [
            "qualifications",
            "add",
            "--org",
            "hosp-q",
            "--group",
            "hematology",
            "--scope",
            "beijing",
            "--from",
            "2025-01-01",
            "--to",
            "2026-12-31",
        ],
    )
    assert r.exit_code == 0, r.output
    qid = r.output.split()[1].rstrip(":")
    assert (
        runner.invoke(
            app,
            [
                "qualifications",
                "add",
                "--org",
                "hosp-q",
                "--item",
                "L999",
                "--scope",
                "beijing",
                "--from",
                "2025-01-01",
            ],
        ).exit_code
        == 1
    )
    assert (
        runner.invoke(
            app,
            [
                "qualifications",
                "add",
                "--org",
                "nowhere",
                "--group",
                "ct",
                "--scope",
                "beijing",
                "--from",
                "2025-01-01",
            ],
        ).exit_code
        == 1
    )
    r = runner.invoke(app, ["qualifications", "list", "--org", "hosp-q"])
    assert qid in r.output
    assert runner.invoke(app, ["qualifications", "revoke", qid]).exit_code == 0
    assert runner.invoke(app, ["qualifications", "revoke", qid]).exit_code == 1

    r = runner.invoke(app, ["demo", "load", "--patients", "4"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["codes", "unmapped"])
    assert r.exit_code == 0
    r = runner.invoke(app, ["index", "check"])
    assert r.exit_code == 0, r.output
    assert "matches a recomputation" in r.output
    r = runner.invoke(app, ["index", "rebuild"])
    assert r.exit_code == 0, r.output
    assert "result index rebuilt from" in r.output
    assert runner.invoke(app, ["index", "check"]).exit_code == 0
