"""FHIR R4 Subscriptions (rest-hook) against a live registry (uvicorn) and real HTTP receivers, on SQLite and
PostgreSQL: activation on create (R4 has no handshake), create / update / withdraw notifications, a receiver that
fails and recovers (retried, delivered once), dead letters and their retry, a registry restart with a receiver
down, and the policy: a subscriber outside the care context receives nothing, patients and clinicians cannot
subscribe, criteria naming a patient outside the hospital's care context are refused."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from registry.app import build_context
from registry.context import AppContext
from tests.conftest import free_port, start_uvicorn, stop_process
from tests.integration.conftest import NATIONAL, Database, make_settings, resident_id, setup_region

FHIR_JSON = "application/fhir+json"


# ---------------------------------------------------------------------------- a real HTTP receiver
@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int


@dataclass
class Receiver:
    """A loopback HTTP server recording every request; ``fail`` answers that many requests 503 first."""

    port: int = field(default_factory=free_port)
    fail: int = 0
    requests: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status = 503 if receiver.fail > 0 else 200
                if receiver.fail > 0:
                    receiver.fail -= 1
                receiver.requests.append(Received(self.command, self.path, dict(self.headers.items()), body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = _any  # noqa: N815 - http.server's names

            def log_message(self, *_args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def delivered(self) -> list[Received]:
        return [r for r in self.requests if r.answered == 200]


def wait_for(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


# ---------------------------------------------------------------------------- the live registry
@dataclass
class Live:
    base: str
    ctx: AppContext
    env: dict[str, str]
    log: Path
    ids: dict[str, str]
    proc: Any = None
    tokens: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        self.proc = start_uvicorn(int(self.base.rsplit(":", 1)[1]), self.env, self.log, timeout=30)

    def stop(self) -> None:
        stop_process(self.proc, 10)
        self.proc = None

    def call(self, method: str, path: str, who: str | None, body: Any = None) -> httpx.Response:
        headers = {"Content-Type": FHIR_JSON}
        if who is not None:
            if who not in self.tokens:
                principal = self.ctx.principals.get(who)
                assert principal is not None
                self.tokens[who] = self.ctx.principals.token(principal, ttl_seconds=3600).access_token
            headers["Authorization"] = f"Bearer {self.tokens[who]}"
        content = None if body is None else orjson.dumps(body)
        return httpx.request(method, f"{self.base}{path}", content=content, headers=headers, timeout=30)

    def deliveries(self, sid: str) -> list[Any]:
        with self.ctx.engine.connect() as conn:
            return list(conn.execute(text("SELECT * FROM subscription_delivery WHERE subscription_id = :s ORDER BY pk"),
                                     {"s": sid}))  # fmt: skip


def _patient(ctx: AppContext, org: str, mrn: str, national: str) -> str:
    from registry.services.audit import AuditContext

    principal = ctx.principals.get(f"{org}-system")
    assert principal is not None
    body = {"resourceType": "Patient", "identifier": [{"system": f"http://{org}.example/mrn", "value": mrn},
                                                      {"system": NATIONAL, "value": national}],
            "name": [{"family": "订", "given": ["阅"]}], "gender": "female", "birthDate": "1980-05-06",
            "managingOrganization": {"reference": f"Organization/{org}"}}  # fmt: skip
    result = ctx.ingest.create(principal, AuditContext("setup", principal, "create"), "Patient", orjson.dumps(body)
                               .decode(), None)  # fmt: skip
    return result.stored.id


@pytest.fixture(scope="module")
def live(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    from registry.auth import PrincipalKind

    var = tmp_path_factory.mktemp("var")
    base = f"http://127.0.0.1:{free_port()}"
    settings = make_settings(var, database.url, public_base_url=base)
    ctx = build_context(settings)
    setup_region(ctx)
    ctx.principals.add(PrincipalKind.PATIENT, "pat-1", "患者", patient_key=ctx.identity.master_key(NATIONAL,
                       resident_id(301)))  # fmt: skip
    ids = {
        "a1": _patient(ctx, "hosp-a", "SA-1", resident_id(301)),  # P1 at A and at B
        "b1": _patient(ctx, "hosp-b", "SB-1", resident_id(301)),
        "a2": _patient(ctx, "hosp-a", "SA-2", resident_id(302)),  # P2 only at A
    }
    env = {
        **os.environ,
        "REGISTRY_VAR_DIR": str(var),
        "REGISTRY_DATABASE_URL": database.url,
        "REGISTRY_PUBLIC_BASE_URL": base,
        "REGISTRY_IDENTITY_SECRET": settings.identity_secret or "",
        "REGISTRY_RATE_LIMIT_PER_SECOND": "0",
        "REGISTRY_SUBSCRIPTION_ALLOW_HTTP_LOOPBACK": "true",
        "REGISTRY_SUBSCRIPTION_RETRY_BASE_SECONDS": "0.2",
        "REGISTRY_SUBSCRIPTION_RETRY_MAX_SECONDS": "1",
        "REGISTRY_SUBSCRIPTION_POLL_SECONDS": "0.2",
        "REGISTRY_SUBSCRIPTION_MAX_ATTEMPTS": "3",
        "REGISTRY_SUBSCRIPTION_TIMEOUT_SECONDS": "2",
    }
    server = Live(base, ctx, env, var / "server.log", ids)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        ctx.engine.dispose()
    assert "Traceback" not in server.log.read_text(), server.log.read_text()


_REPORTS = iter(range(1, 10_000))


def report(live: Live, patient: str, **extra: Any) -> dict[str, Any]:
    body = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": "http://hosp-a.example/report", "value": f"SUB-{next(_REPORTS)}-{time.time_ns()}"}],
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
        "subject": {"reference": f"Patient/{live.ids[patient]}"},
        "effectiveDateTime": "2025-03-01T08:00:00+08:00",
        "issued": "2025-03-01T10:00:00+08:00",
        "performer": [{"reference": "Organization/hosp-a"}],
        **extra,
    }
    r = live.call("POST", "/fhir/DiagnosticReport", "hosp-a-system", body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def subscribe(live: Live, who: str, criteria: str, endpoint: str, *, payload: str | None = FHIR_JSON,
              status: str = "requested", **channel: Any) -> httpx.Response:  # fmt: skip
    body: dict[str, Any] = {"resourceType": "Subscription", "status": status, "reason": "测试订阅",
                            "criteria": criteria,
                            "channel": {"type": "rest-hook", "endpoint": endpoint, **channel}}  # fmt: skip
    if payload:
        body["channel"]["payload"] = payload
    return live.call("POST", "/fhir/Subscription", who, body)


def unsubscribe(live: Live, who: str, *sids: str) -> None:
    """Delete the test's Subscriptions, so later tests' writes notify nobody of it."""
    for sid in sids:
        assert live.call("DELETE", f"/fhir/Subscription/{sid}", who).status_code in (200, 204)


# ---------------------------------------------------------------------------- tests
def test_create_update_withdraw_notify_only_within_the_care_context(live: Live) -> None:
    with_payload, ping, outsider = Receiver().start(), Receiver().start(), Receiver().start()
    try:
        r = subscribe(live, "hosp-b-system", "DiagnosticReport?performer=Organization/hosp-a&status=final",
                      with_payload.url, header=["Authorization: Bearer receiver-secret-b"])  # fmt: skip
        assert r.status_code == 201, r.text
        sub = r.json()
        assert sub["status"] == "active"  # R4: no handshake, activated as it is accepted
        assert with_payload.requests == []  # and no ping before activating
        r = subscribe(live, "hosp-b-system", f"DiagnosticReport?patient=Patient/{live.ids['a1']}", ping.url,
                      payload=None)  # fmt: skip
        assert r.status_code == 201, r.text
        ping_sub = r.json()
        r = subscribe(live, "hosp-c-system", "DiagnosticReport?performer=Organization/hosp-a", outsider.url)
        assert r.status_code == 201, r.text  # allowed: it names no patient — but it will receive nothing here
        outsider_sub = r.json()

        created = report(live, "a1")  # P1: in B's care context
        other = report(live, "a2")  # P2: only at A — not B's
        wait_for(lambda: len(with_payload.delivered()) == 1 and len(ping.delivered()) == 1)
        put = with_payload.delivered()[0]
        assert (put.method, put.path) == ("PUT", f"/hook/DiagnosticReport/{created['id']}")
        assert put.headers["Authorization"] == "Bearer receiver-secret-b"
        assert put.headers["Content-Type"] == FHIR_JSON
        assert orjson.loads(put.body)["meta"]["versionId"] == "1"
        post = ping.delivered()[0]
        assert (post.method, post.path, post.body) == ("POST", "/hook", b"")

        updated = {**created, "conclusion": "复核"}
        r = live.call("PUT", f"/fhir/DiagnosticReport/{created['id']}", "hosp-a-system", updated)
        assert r.status_code == 200, r.text
        wait_for(lambda: len(with_payload.delivered()) == 2 and len(ping.delivered()) == 2)
        assert orjson.loads(with_payload.delivered()[1].body)["meta"]["versionId"] == "2"
        r = live.call("PUT", f"/fhir/DiagnosticReport/{created['id']}", "hosp-a-system", updated)
        assert r.status_code == 200 and r.json()["meta"]["versionId"] == "2"  # unchanged: no version, no notification

        withdrawn = {**updated, "status": "entered-in-error"}
        r = live.call("PUT", f"/fhir/DiagnosticReport/{created['id']}", "hosp-a-system", withdrawn)
        assert r.status_code == 200, r.text
        wait_for(lambda: len(ping.delivered()) == 3)  # withdrawal: notified for the new state where criteria match
        r = live.call("DELETE", f"/fhir/DiagnosticReport/{created['id']}", "hosp-a-system")
        assert r.status_code in (200, 204), r.text
        time.sleep(1.0)
        assert len(ping.delivered()) == 3  # R4: no notification of a deletion
        assert len(with_payload.delivered()) == 2  # status=final no longer matched the withdrawn version
        assert outsider.requests == []  # outside its care context: nothing of either patient
        assert all(other["id"] not in r.path for r in with_payload.requests)
        assert [d.state for d in live.deliveries(sub["id"])] == ["delivered", "delivered"]
        assert [d.state for d in live.deliveries(ping_sub["id"])] == ["delivered"] * 3
        assert live.deliveries(outsider_sub["id"]) == []
        unsubscribe(live, "hosp-b-system", sub["id"], ping_sub["id"])
        unsubscribe(live, "hosp-c-system", outsider_sub["id"])
    finally:
        for receiver in (with_payload, ping, outsider):
            receiver.stop()


def test_a_failing_receiver_is_retried_and_gets_the_notification_once(live: Live) -> None:
    receiver = Receiver(fail=2).start()
    try:
        r = subscribe(live, "hosp-b-system", f"DiagnosticReport?patient=Patient/{live.ids['b1']}", receiver.url)
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        created = report(live, "a1")  # about P1 too, but about A's Patient record, which the criteria do not name
        time.sleep(0.3)
        assert live.deliveries(sid) == []  # the criteria name B's Patient record; A's report is about A's record
        r = live.call("POST", "/fhir/DiagnosticReport", "hosp-b-system", {
            "resourceType": "DiagnosticReport", "status": "final",
            "identifier": [{"system": "http://hosp-b.example/report", "value": f"RB-{time.time_ns()}"}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
            "subject": {"reference": f"Patient/{live.ids['b1']}"}, "effectiveDateTime": "2025-03-02",
            "performer": [{"reference": "Organization/hosp-b"}]})  # fmt: skip
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        wait_for(lambda: len(receiver.delivered()) == 1)
        time.sleep(1.0)  # nothing more comes: delivered once
        assert [x.answered for x in receiver.requests] == [503, 503, 200]
        assert {x.path for x in receiver.requests} == {f"/hook/DiagnosticReport/{rid}"}
        (row,) = live.deliveries(sid)
        assert (row.state, row.attempts) == ("delivered", 3)
        assert created["id"] not in str(receiver.requests)
        unsubscribe(live, "hosp-b-system", sid)
    finally:
        receiver.stop()


def test_repeated_failures_turn_error_dead_letters_retried_from_the_command_line(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver = Receiver(fail=1000).start()
    try:
        r = subscribe(live, "hosp-b-system", f"DiagnosticReport?patient=Patient/{live.ids['a1']}&code=58410-2",
                      receiver.url)  # fmt: skip
        sid = r.json()["id"]
        created = report(live, "a1")
        wait_for(lambda: [d.state for d in live.deliveries(sid)] == ["dead"])
        got = live.call("GET", f"/fhir/Subscription/{sid}", "hosp-b-system").json()
        assert got["status"] == "error"
        assert "HTTP 503" in got["error"] and f"DiagnosticReport/{created['id']}" in got["error"]
        assert len(receiver.requests) == 3  # REGISTRY_SUBSCRIPTION_MAX_ATTEMPTS

        from registry.cli import app, base

        monkeypatch.setattr(base.out, "width", 400)  # the table whole, not cut to the test's terminal
        for name in ("REGISTRY_VAR_DIR", "REGISTRY_DATABASE_URL", "REGISTRY_IDENTITY_SECRET"):
            monkeypatch.setenv(name, live.env[name])
        runner = CliRunner()
        out = runner.invoke(app, ["subscriptions", "status", "--dead"])
        assert out.exit_code == 0, out.output
        assert sid in out.output and "HTTP 503" in out.output
        receiver.fail = 0
        out = runner.invoke(app, ["subscriptions", "retry", "--subscription", sid])
        assert out.exit_code == 0, out.output
        assert "1 dead letters queued again" in out.output
        wait_for(lambda: len(receiver.delivered()) == 1)  # the worker's poll finds the re-queued row
        wait_for(lambda: live.call("GET", f"/fhir/Subscription/{sid}", "hosp-b-system").json()["status"] == "active")
        assert "error" not in live.call("GET", f"/fhir/Subscription/{sid}", "hosp-b-system").json()
        unsubscribe(live, "hosp-b-system", sid)
    finally:
        receiver.stop()


def test_nothing_is_lost_across_a_registry_restart_with_the_receiver_down(live: Live) -> None:
    receiver = Receiver()  # not listening yet: connections are refused
    r = subscribe(live, "hosp-b-system", f"DiagnosticReport?patient=Patient/{live.ids['a1']}&status=final",
                  receiver.url)  # fmt: skip
    sid = r.json()["id"]
    created = report(live, "a1")
    wait_for(lambda: any(d.attempts >= 1 for d in live.deliveries(sid)))
    live.stop()
    receiver.start()
    try:
        live.start()
        wait_for(lambda: len(receiver.delivered()) == 1)
        # the receiver answered; the worker records it once its exchange has ended (not at the same instant)
        wait_for(lambda: [d.state for d in live.deliveries(sid)] == ["delivered"])
        time.sleep(0.5)  # and nothing is sent again
        assert [x.path for x in receiver.requests] == [f"/hook/DiagnosticReport/{created['id']}"]
        assert [d.state for d in live.deliveries(sid)] == ["delivered"]
        unsubscribe(live, "hosp-b-system", sid)
    finally:
        receiver.stop()


def test_who_may_subscribe_and_to_what(live: Live) -> None:
    ok = "https://receiver.example.cn/hook"
    crit = f"DiagnosticReport?patient=Patient/{live.ids['a2']}"
    assert subscribe(live, "pat-1", crit, ok).status_code == 403  # patients may not subscribe
    assert subscribe(live, "dr-b", crit, ok).status_code == 403  # nor clinicians
    r = subscribe(live, "hosp-b-system", crit, ok)  # P2 is not in B's care context
    assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"
    assert live.ids["a2"] not in r.text
    r = subscribe(live, "hosp-b-system", "DiagnosticReport?patient=Patient/nobody-here", ok)
    assert r.status_code == 403  # refused the same way whether or not the person exists
    r = subscribe(live, "hosp-b-system", "DiagnosticReport?patient.identifier=" + NATIONAL + "|" + resident_id(301),
                  ok)  # fmt: skip
    assert r.status_code == 422  # a national identifier would be stored in clear
    assert resident_id(301) not in r.text
    assert subscribe(live, "admin", crit, ok).status_code == 201  # an admin-registered client may
    for criteria, endpoint, status, channel in (
        (
            crit.replace("a2", "a1").replace(live.ids["a2"], live.ids["a1"]),
            "http://receiver.example.cn/hook",
            "requested",
            {},
        ),  # plain http off loopback
        ("DiagnosticReport?patient=Patient/x&_count=5", ok, "requested", {}),
        ("Patient?name=x", ok, "requested", {}),
        ("DiagnosticReport?colour=red", ok, "requested", {}),
        (f"DiagnosticReport?patient=Patient/{live.ids['b1']}", ok, "error", {}),
        (f"DiagnosticReport?patient=Patient/{live.ids['b1']}", ok, "requested", {"header": ["no colon here"]}),
    ):
        r = subscribe(live, "hosp-b-system", criteria, endpoint, status=status, **channel)
        assert r.status_code == 422, (criteria, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    r = live.call("POST", "/fhir/Subscription", "hosp-b-system", {
        "resourceType": "Subscription", "status": "requested", "reason": "x", "criteria": crit.replace(
            live.ids["a2"], live.ids["b1"]), "channel": {"type": "websocket"}})  # fmt: skip
    assert r.status_code == 422, r.text
    # a Subscription is read by its owner (and admins) only
    r = subscribe(live, "hosp-b-system", f"DiagnosticReport?patient=Patient/{live.ids['b1']}", ok)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert live.call("GET", f"/fhir/Subscription/{sid}", "hosp-b-system").status_code == 200
    assert live.call("GET", f"/fhir/Subscription/{sid}", "admin").status_code == 200
    assert live.call("GET", f"/fhir/Subscription/{sid}", "hosp-c-system").status_code == 403
    assert live.call("GET", f"/fhir/Subscription/{sid}", "pat-1").status_code == 403
    found = live.call("GET", "/fhir/Subscription?status=active", "hosp-c-system").json()
    assert sid not in orjson.dumps(found).decode()
    assert live.call("DELETE", f"/fhir/Subscription/{sid}", "hosp-c-system").status_code == 403
    r = live.call("PUT", f"/fhir/Subscription/{sid}", "hosp-b-system", {**live.call(
        "GET", f"/fhir/Subscription/{sid}", "hosp-b-system").json(), "status": "off"})  # fmt: skip
    assert r.status_code == 200 and r.json()["status"] == "off"
    r = live.call("POST", "/fhir/DiagnosticReport", "hosp-b-system", {
        "resourceType": "DiagnosticReport", "status": "final",
        "identifier": [{"system": "http://hosp-b.example/report", "value": f"RB-{time.time_ns()}"}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
        "subject": {"reference": f"Patient/{live.ids['b1']}"}, "effectiveDateTime": "2025-03-02",
        "performer": [{"reference": "Organization/hosp-b"}]})  # fmt: skip
    assert r.status_code == 201, r.text
    assert live.deliveries(sid) == []  # switched off: nothing is queued for it
    meta = live.call("GET", "/fhir/metadata", None).json()
    assert "Subscription" in [res["type"] for res in meta["rest"][0]["resource"]]
