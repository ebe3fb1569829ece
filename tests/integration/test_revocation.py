"""Principals that can be revoked (docs/design.md §6: "clients can be disabled, removed and rotated; a disabled client's
tokens stop working"): every bearer token and page session is checked against the stored client — enabled, not
rotated or disabled since the token was issued, same kind, organization and patient, scopes still held — through a
per-process cache of ``REGISTRY_CLIENT_CACHE_SECONDS``; refusals are 401 ``invalid_token`` (RFC 6750 §3.1) and audited.

Time is the test's: the app runs on ``Clock`` (tokens' ``iat``, sessions, and the cache's age), and so does the CLI.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from typer.testing import CliRunner

from registry import cli
from registry.app import build_context, create_app
from registry.auth import PrincipalKind
from registry.context import AppContext
from registry.settings import Settings
from tests.integration.conftest import NATIONAL, Api, Database, make_settings, resident_id, setup_region, unique

T0 = datetime(2026, 3, 2, 2, 0, 0, 250_000, tzinfo=UTC)
TTL = 5.0  # REGISTRY_CLIENT_CACHE_SECONDS, the default


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture(scope="module")
def settings(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(tmp_path_factory.mktemp("var"), database.url)


@pytest.fixture(scope="module")
def api(settings: Settings, clock: Clock) -> Iterator[Api]:
    app = create_app(settings, clock=clock)
    ctx: AppContext = app.state.ctx
    assert ctx.settings.client_cache_seconds == TTL
    setup_region(ctx)
    with TestClient(app) as client:
        yield Api(client, ctx)
    ctx.engine.dispose()


@pytest.fixture
def browser(api: Api) -> Iterator[TestClient]:
    with TestClient(api.client.app, follow_redirects=False) as client:
        yield client


# ---------------------------------------------------------------------------------------------------- helpers
def _new(api: Api, kind: PrincipalKind = PrincipalKind.HOSPITAL, **kw: Any) -> tuple[str, str]:
    """A client of its own (id, secret); a hospital of hosp-a unless told otherwise."""
    if kind is PrincipalKind.HOSPITAL:
        kw.setdefault("org_id", "hosp-a")
    cid = unique(kind.value)
    return cid, api.ctx.principals.add(kind, cid, f"test {kind.value}", **kw).secret


def _token(api: Api, cid: str, secret: str, **form: str) -> httpx.Response:
    data = {"grant_type": "client_credentials", "client_id": cid, "client_secret": secret, **form}
    return api.client.post("/auth/token", data=data)


def _access(api: Api, cid: str, secret: str, **form: str) -> str:
    r = _token(api, cid, secret, **form)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def _read(api: Api, token: str, **headers: str) -> httpx.Response:
    """A directory read every principal may make."""
    return api.client.get("/fhir/Organization/hosp-a", headers={"Authorization": f"Bearer {token}", **headers})


def _refused(r: httpx.Response, reason: str) -> None:
    """401 with an OperationOutcome and a Bearer challenge carrying ``error="invalid_token"`` (RFC 6750 §3.1)."""
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "login"
    assert reason in outcome["issue"][0]["diagnostics"], outcome
    challenge = r.headers["www-authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge, challenge


def _audited_refusal(api: Api, token: str, cid: str, reason: str) -> None:
    """The refused request is one audit row (401, outcome 4, naming the client) and an AuditEvent of the client."""
    rid = uuid.uuid4().hex
    _refused(_read(api, token, **{"X-Request-Id": rid}), reason)
    with api.ctx.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT status, outcome, client_id, detail FROM audit_event WHERE request_id = :r"), {"r": rid}
        ).all()
    assert [(r.status, r.outcome, r.client_id) for r in rows] == [(401, "4", cid)]
    assert reason in rows[0].detail
    events = api.get("/fhir/AuditEvent", params={"agent": cid, "_count": "200"}).json().get("entry", [])
    assert any(e["resource"]["outcome"] == "4" and reason in e["resource"].get("outcomeDesc", "") for e in events)


def _update_client(api: Api, cid: str, **values: Any) -> None:
    """Change the stored client behind the server's back, as another process (or an operator with SQL) would."""
    assignments = ", ".join(f"{name} = :{name}" for name in values)
    with api.ctx.engine.begin() as conn:
        conn.execute(text(f"UPDATE client SET {assignments} WHERE client_id = :cid"), {**values, "cid": cid})


# ---------------------------------------------------------------------------------------------------- disable
def test_a_disabled_clients_token_is_refused_and_enable_lets_it_obtain_new_ones(api: Api, clock: Clock) -> None:
    cid, secret = _new(api)
    token = _access(api, cid, secret)
    assert _read(api, token).status_code == 200

    api.ctx.principals.disable(cid)  # through this process: at once, no wait for the cache
    _audited_refusal(api, token, cid, "client is disabled")
    refused = _token(api, cid, secret)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"

    api.ctx.principals.enable(cid)
    _audited_refusal(api, token, cid, "revoked")  # what was issued before `disable` stays refused
    fresh = _access(api, cid, secret)  # in the very second of the change, too
    assert _read(api, fresh).status_code == 200
    clock.advance(TTL + 1)
    assert _read(api, fresh).status_code == 200
    _refused(_read(api, token), "revoked")


def test_a_removed_clients_token_is_refused_and_its_audit_trail_stays(api: Api, clock: Clock) -> None:
    cid, secret = _new(api)
    token = _access(api, cid, secret)
    assert _read(api, token).status_code == 200
    api.ctx.principals.remove(cid)
    _audited_refusal(api, token, cid, "client no longer exists")
    assert _token(api, cid, secret).status_code == 401
    events = api.get("/fhir/AuditEvent", params={"agent": cid, "_count": "200"}).json()["entry"]
    assert {(e["resource"]["subtype"][0]["code"], e["resource"]["outcome"]) for e in events} == {
        ("read", "0"),  # the read from before the removal is still there
        ("operation", "4"),
    }
    # the id is free again; the old token does not serve the new client of that name
    clock.advance(1)
    api.ctx.principals.add(PrincipalKind.HOSPITAL, cid, "again", org_id="hosp-a")
    _refused(_read(api, token), "revoked")


# ---------------------------------------------------------------------------------------------------- rotate
def test_rotating_the_secret_ends_the_old_secret_and_the_tokens_issued_with_it(api: Api, clock: Clock) -> None:
    cid, old_secret = _new(api)
    before = _access(api, cid, old_secret)
    narrowed = _access(api, cid, old_secret, scope="system/Organization.read")
    assert _read(api, before).status_code == 200
    assert _read(api, narrowed).status_code == 200

    new_secret = api.ctx.principals.rotate_secret(cid)
    assert new_secret != old_secret
    refused = _token(api, cid, old_secret)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    _audited_refusal(api, before, cid, "revoked")
    _refused(_read(api, narrowed), "revoked")
    after = _access(api, cid, new_secret)  # the same instant as the rotation: dated to the next second
    assert _read(api, after).status_code == 200
    clock.advance(TTL + 1)
    assert _read(api, after).status_code == 200
    _refused(_read(api, before), "revoked")


def test_rotating_an_unknown_client_or_disabling_it_is_not_found(api: Api) -> None:
    from registry.errors import NotFoundError

    for change in (
        api.ctx.principals.rotate_secret,
        api.ctx.principals.disable,
        api.ctx.principals.enable,
        api.ctx.principals.remove,
    ):
        with pytest.raises(NotFoundError, match="no client"):
            change(unique("nobody"))


# ---------------------------------------------------------------------------------------------------- claims
def test_a_token_narrowed_at_the_token_endpoint_is_fine_but_one_wider_than_the_stored_scopes_is_not(
    api: Api, clock: Clock
) -> None:
    cid, secret = _new(api)
    narrowed = _access(api, cid, secret, scope="system/Organization.read")
    wide = _access(api, cid, secret)
    assert _read(api, narrowed).status_code == 200
    _update_client(api, cid, scopes="system/Organization.read")  # an operator narrows the client's scopes
    assert _read(api, wide).status_code == 200  # within the cache's TTL, the server still has the old row…
    clock.advance(TTL + 0.5)
    _audited_refusal(api, wide, cid, "the scopes changed")  # …after it, the wider token is refused
    assert _read(api, narrowed).status_code == 200  # and the one inside the new scopes still works


@pytest.mark.parametrize(
    ("change", "reason"),
    [({"kind": "clinician"}, "the kind changed"), ({"org_id": "hosp-b"}, "the organization changed")],
)
def test_a_token_whose_clients_kind_or_organization_changed_is_refused(
    api: Api, clock: Clock, change: dict[str, str], reason: str
) -> None:
    cid, secret = _new(api)
    token = _access(api, cid, secret)
    assert _read(api, token).status_code == 200
    _update_client(api, cid, **change)
    clock.advance(TTL + 0.5)
    _audited_refusal(api, token, cid, reason)


def test_a_patient_token_whose_patient_changed_is_refused(api: Api, clock: Clock) -> None:
    key = api.ctx.identity.master_key(NATIONAL, resident_id(301))
    cid, secret = _new(api, PrincipalKind.PATIENT, patient_key=key)
    token = _access(api, cid, secret)
    assert _read(api, token).status_code == 200
    _update_client(api, cid, patient_key=api.ctx.identity.master_key(NATIONAL, resident_id(302)))
    clock.advance(TTL + 0.5)
    _audited_refusal(api, token, cid, "the patient changed")


def test_the_stored_client_is_read_once_per_ttl_not_once_per_request(api: Api, clock: Clock) -> None:
    cid, secret = _new(api)
    token = _access(api, cid, secret)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if re.search(r"\bFROM client\b", statement):
            statements.append(statement)

    event.listen(api.ctx.engine, "before_cursor_execute", seen)
    try:
        clock.advance(TTL + 0.5)  # whatever was cached has expired
        for _ in range(5):
            assert _read(api, token).status_code == 200
        assert len(statements) == 1
        clock.advance(TTL + 0.5)
        assert _read(api, token).status_code == 200
        assert len(statements) == 2
    finally:
        event.remove(api.ctx.engine, "before_cursor_execute", seen)


# ---------------------------------------------------------------------------------------------------- pages
def _sign_in(browser: TestClient, area: str, account: str, secret: str) -> httpx.Response:
    page = browser.get(f"/{area}/login")
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match
    return browser.post(f"/{area}/login", data={"account": account, "secret": secret, "csrf": match.group(1)})


def _signed_in(browser: TestClient) -> bool:
    r = browser.get("/clinician")
    assert r.status_code in (200, 303), r.text
    return r.status_code == 200


def test_the_page_session_of_a_disabled_clinician_is_signed_out(api: Api, browser: TestClient) -> None:
    cid, secret = _new(api, PrincipalKind.CLINICIAN, org_id="hosp-b")
    assert _sign_in(browser, "clinician", cid, secret).status_code == 303
    assert _signed_in(browser)
    api.ctx.principals.disable(cid)
    assert not _signed_in(browser)
    assert _sign_in(browser, "clinician", cid, secret).status_code == 401  # a disabled client cannot sign in
    api.ctx.principals.enable(cid)
    assert not _signed_in(browser)  # enabling does not bring the old session back
    assert _sign_in(browser, "clinician", cid, secret).status_code == 303
    assert _signed_in(browser)


def test_a_rotated_secret_or_a_removed_client_ends_the_page_session(
    api: Api, browser: TestClient, clock: Clock
) -> None:
    cid, secret = _new(api, PrincipalKind.CLINICIAN, org_id="hosp-b")
    _sign_in(browser, "clinician", cid, secret)
    assert _signed_in(browser)
    new_secret = api.ctx.principals.rotate_secret(cid)
    assert not _signed_in(browser)
    assert _sign_in(browser, "clinician", cid, secret).status_code == 401
    assert _sign_in(browser, "clinician", cid, new_secret).status_code == 303
    assert _signed_in(browser)
    clock.advance(1)
    api.ctx.principals.remove(cid)
    assert not _signed_in(browser)


def test_a_session_whose_client_was_disabled_elsewhere_ends_within_the_cache_ttl(
    api: Api, browser: TestClient, clock: Clock
) -> None:
    cid, secret = _new(api, PrincipalKind.CLINICIAN, org_id="hosp-b")
    _sign_in(browser, "clinician", cid, secret)
    assert _signed_in(browser)
    clock.advance(1)
    _update_client(api, cid, disabled=True)  # another process: this server learns it from the database
    clock.advance(TTL - 1.5)
    assert _signed_in(browser)
    clock.advance(1)
    assert not _signed_in(browser)


# ---------------------------------------------------------------------------------------------------- the CLI
@pytest.fixture
def run_cli(settings: Settings, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``hr-registry`` as an operator runs it — its own context, hence its own process-level cache — on the running
    app's database and keys, on the test's clock."""
    monkeypatch.setenv("REGISTRY_VAR_DIR", str(settings.var_dir))
    monkeypatch.setenv("REGISTRY_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("REGISTRY_IDENTITY_SECRET", "test-identity-secret")
    monkeypatch.setenv("REGISTRY_PUBLIC_BASE_URL", settings.public_base_url)
    contexts: list[AppContext] = []

    def context(given: Settings | None = None) -> AppContext:
        ctx = build_context(given or Settings.from_env(), clock)
        contexts.append(ctx)
        return ctx

    monkeypatch.setattr(cli.base, "_context", context)
    runner = CliRunner()

    def run(*args: str, stdin: str | None = None) -> Any:
        return runner.invoke(cli.app, list(args), input=stdin)

    yield run
    for ctx in contexts:
        ctx.engine.dispose()


def _printed_secret(output: str) -> str:
    return next(line for line in output.splitlines() if "client_secret" in line).split()[1]


def test_the_cli_revokes_a_running_servers_tokens_within_the_cache_ttl(api: Api, clock: Clock, run_cli: Any) -> None:
    cid = unique("dr-cli")
    r = run_cli("clients", "add-clinician", cid, "--org", "hosp-b", "--name", "医生 CLI")
    assert r.exit_code == 0, r.output
    secret = _printed_secret(r.output)
    token = _access(api, cid, secret)
    assert _read(api, token).status_code == 200  # the server has now read (and cached) the client

    clock.advance(1)
    r = run_cli("clients", "disable", cid)
    assert r.exit_code == 0, r.output
    assert "disabled" in r.output
    assert _token(api, cid, secret).status_code == 401  # the token endpoint reads the database: at once
    clock.advance(TTL - 1.5)
    assert _read(api, token).status_code == 200  # another process's change: still in this server's cache
    clock.advance(1)
    _audited_refusal(api, token, cid, "client is disabled")  # within the TTL it is refused
    listed = run_cli("clients", "list")
    assert listed.exit_code == 0
    row = next(line for line in listed.output.splitlines() if cid in line)
    assert "yes" in row
    assert secret not in listed.output

    r = run_cli("clients", "enable", cid)
    assert r.exit_code == 0, r.output
    fresh = _access(api, cid, secret)
    clock.advance(TTL + 0.5)
    assert _read(api, fresh).status_code == 200
    _refused(_read(api, token), "revoked")

    clock.advance(1)
    r = run_cli("clients", "rotate-secret", cid)
    assert r.exit_code == 0, r.output
    assert "shown once" in r.output
    new_secret = _printed_secret(r.output)
    assert new_secret != secret
    assert _token(api, cid, secret).status_code == 401  # the old secret: at once
    rotated = _access(api, cid, new_secret)
    clock.advance(TTL + 0.5)
    _refused(_read(api, fresh), "revoked")
    assert _read(api, rotated).status_code == 200

    r = run_cli("clients", "remove", cid, stdin="n\n")
    assert r.exit_code == 1
    assert _read(api, rotated).status_code == 200  # not removed
    r = run_cli("clients", "remove", cid, stdin="y\n")
    assert r.exit_code == 0, r.output
    assert "removed" in r.output
    clock.advance(TTL + 0.5)
    _audited_refusal(api, rotated, cid, "client no longer exists")
    assert cid not in run_cli("clients", "list").output
    events = api.get("/fhir/AuditEvent", params={"agent": cid, "_count": "200"}).json()["entry"]
    assert sum(e["resource"]["outcome"] == "0" for e in events) >= 3  # the reads before the removal are kept


def test_the_cli_says_so_for_an_unknown_client(run_cli: Any) -> None:
    nobody = unique("nobody")
    for command in ("disable", "enable", "rotate-secret"):
        r = run_cli("clients", command, nobody)
        assert r.exit_code == 1, (command, r.output)
        assert f"no client '{nobody}'" in r.output
    r = run_cli("clients", "remove", nobody, "--yes")
    assert r.exit_code == 1
    assert f"no client '{nobody}'" in r.output


def test_cli_remove_with_yes_asks_nothing(api: Api, run_cli: Any) -> None:
    cid, _secret = _new(api)
    r = run_cli("clients", "remove", cid, "--yes")
    assert r.exit_code == 0, r.output
    assert "Remove client" not in r.output
    assert api.ctx.principals.current(cid) is None
