"""Patient notifications (docs/notifications.md) on SQLite and PostgreSQL: queued in the report's own transaction,
one per (resource version, channel), texts that name only what the catalog clears, delivery to a real HTTP gateway
with backoff, dead letters and their retry, no duplicate after a lost answer, two workers sharing the queue, and the
portal's settings page."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from registry.app import create_app
from registry.auth import Principal, PrincipalKind
from registry.cli import app as cli_app
from registry.cli import base as cli_base
from registry.context import AppContext
from registry.fhir.extract import to_us
from registry.services.audit import AuditContext
from registry.services.notifications import Delivery, Gateway, RetryPolicy
from registry.services.notifications.local_gateway import LocalGateway
from registry.store.notification_sql import Message, NotificationSql
from tests.conftest import free_port
from tests.integration.conftest import NATIONAL, Api, Database, make_settings, resident_id, setup_region, unique

T0 = datetime(2026, 5, 4, 2, 0, tzinfo=UTC)  # 10:00 in Beijing
HIV = {"coding": [{"system": "http://loinc.org", "code": "56888-1"}]}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Region:
    api: Api
    ctx: AppContext
    clock: Clock
    var: Path


@pytest.fixture(scope="module")
def region(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Region]:
    var = tmp_path_factory.mktemp("var")
    clock = Clock(T0)
    app = create_app(make_settings(var, database.url), clock=clock)
    ctx: AppContext = app.state.ctx
    setup_region(ctx)
    with TestClient(app) as client:
        yield Region(Api(client, ctx), ctx, clock, var)
    ctx.engine.dispose()


def patient(
    region: Region, seed: int, *, sms: bool = True, push: bool = False, language: str = "zh"
) -> tuple[Principal, str]:
    """A patient registered at hospital A with a portal account that chose these channels; (principal, Patient id)."""
    nid = resident_id(seed)
    account = unique("pat")
    region.ctx.principals.add(PrincipalKind.PATIENT, account, "患者", patient_key=region.ctx.identity.master_key(
        NATIONAL, nid))  # fmt: skip
    principal = region.ctx.principals.get(account)
    assert principal is not None
    region.ctx.notifications.choose(principal, AuditContext("t", principal, "update"), sms=sms, push=push,
                                    language=language)  # fmt: skip
    pid = region.api.patient("hosp-a", unique("mrn"), nid)["id"]
    return principal, pid


def queued(region: Region, principal: Principal) -> list[Message]:
    return list(reversed(region.ctx.notifications.sent(principal)))


def update(region: Region, body: dict[str, object], **changes: object) -> httpx.Response:
    new = {**body, **changes}
    new.pop("meta", None)
    return region.api.put(f"/fhir/DiagnosticReport/{body['id']}", new, who="hosp-a-system")


def test_a_final_report_queues_one_message_per_channel_with_its_words(region: Region) -> None:
    principal, pid = patient(region, 101, sms=True, push=True)
    report = region.api.report("hosp-a", pid, unique("r"), conclusion="白细胞 11.2 偏高")
    rows = queued(region, principal)
    assert [(m.channel, m.version, m.status) for m in rows] == [("sms", 1, "queued"), ("push", 1, "queued")]
    text = "【区域检查检验结果互认平台】您在A 医院的血常规（全血细胞计数）检验报告已出，请登录平台查看。"
    assert {m.text for m in rows} == {text}
    assert {m.recipient for m in rows} == {principal.client_id}
    assert not any(word in text for word in ("11.2", "偏高", "测试"))  # no value, no conclusion, no name
    # an unchanged repeat writes no version and queues nothing
    assert update(region, report).status_code == 200
    assert len(queued(region, principal)) == 2
    # a correction is a new version: one more per channel, saying so
    assert update(region, report, status="amended").status_code == 200
    rows = queued(region, principal)
    assert [(m.channel, m.version) for m in rows[2:]] == [("sms", 2), ("push", 2)]
    assert rows[2].text == text.replace("已出", "已更正")
    # a preliminary report is no notice
    region.api.report("hosp-a", pid, unique("r"), status="preliminary")
    assert len(queued(region, principal)) == 4


def test_english_when_chosen_and_nothing_for_channels_off(region: Region) -> None:
    principal, pid = patient(region, 102, language="en")
    region.api.report("hosp-a", pid, unique("r"))
    (m,) = queued(region, principal)
    assert m.text == ("Your Complete blood count panel lab report from A 医院 is ready. Sign in to the regional "
                      "results portal to view it.")  # fmt: skip
    off, pid_off = patient(region, 103, sms=False, push=False)
    region.api.report("hosp-a", pid_off, unique("r"))
    assert queued(region, off) == []


def test_a_sensitive_item_is_named_nowhere_nor_its_hospital(region: Region) -> None:
    principal, pid = patient(region, 104)
    region.api.report("hosp-a", pid, unique("r"), code=HIV, conclusion="HIV 抗体阳性")
    (m,) = queued(region, principal)
    assert m.text == "【区域检查检验结果互认平台】您有一份新的检查检验报告，请登录平台查看。"
    for word in ("HIV", "艾滋", "A 医院", "阳性", "测试"):
        assert word not in m.text


def test_a_hospital_name_too_long_for_a_text_gives_the_generic_one_and_never_fails_the_write(region: Region) -> None:
    principal, pid = patient(region, 111)
    admin = region.ctx.principals.get("admin")
    assert admin is not None
    long_name = "很长的医院名称" * 100
    body = orjson.dumps({"resourceType": "Organization", "id": "hosp-a", "name": long_name}).decode()
    region.ctx.ingest.update(admin, AuditContext("t", admin, "update"), "Organization", "hosp-a", body, None)
    try:
        region.api.report("hosp-a", pid, unique("r"))
        (m,) = queued(region, principal)
        assert m.text == "【区域检查检验结果互认平台】您有一份新的检查检验报告，请登录平台查看。"
    finally:
        body = orjson.dumps({"resourceType": "Organization", "id": "hosp-a", "name": "A 医院"}).decode()
        region.ctx.ingest.update(admin, AuditContext("t", admin, "update"), "Organization", "hosp-a", body, None)


def test_a_rolled_back_write_queues_nothing(region: Region) -> None:
    principal, pid = patient(region, 105)
    good = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
        "subject": {"reference": f"Patient/{pid}"},
        "identifier": [{"system": "http://hosp-a.example/report", "value": unique("r")}],
        "effectiveDateTime": "2026-05-01T08:00:00+08:00",
        "performer": [{"reference": "Organization/hosp-a"}],
    }
    bad = {**good, "identifier": [{"system": "http://hosp-b.example/report", "value": unique("r")}]}  # not A's
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": good, "request": {"method": "POST", "url": "DiagnosticReport"}},
        {"resource": bad, "request": {"method": "POST", "url": "DiagnosticReport"}}]}  # fmt: skip
    r = region.api.post("/fhir", bundle, who="hosp-a-system")
    assert r.status_code == 403, r.text
    assert queued(region, principal) == []


class LostAnswers(Gateway):
    """Delivers for real, then reports the first ``lose`` deliveries as failed (the answer lost on the way back)."""

    def __init__(self, *args: object, lose: int) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.lose = lose

    def send(self, message: Message, *, now: datetime) -> tuple[bool, str | None]:
        ok, why = super().send(message, now=now)
        if ok and self.lose > 0:
            self.lose -= 1
            return False, "ReadTimeout"
        return ok, why


def delivery(region: Region, url: str, retry: RetryPolicy, gateway: type[Gateway] = Gateway, **kw: int) -> Delivery:
    client = httpx.Client(timeout=5)
    gw = gateway(client, url, None, "http://testserver/portal", **kw) if kw else gateway(client, url, None, "-")
    return Delivery(region.ctx.uow, gw, region.clock, retry, batch_size=50, lease_seconds=60, concurrency=4)


def drain(region: Region) -> None:
    """Deliver whatever earlier tests left queued (to a gateway that takes it), so each test counts its own."""
    with LocalGateway(region.var / unique("drain")).start() as gw:
        d = delivery(region, gw.url, RetryPolicy(1, 1, 1))
        region.clock.now += timedelta(days=1)
        while d.run_once():
            pass


def test_backoff_then_dead_letter_then_retry_delivers_once(region: Region) -> None:
    drain(region)
    principal, pid = patient(region, 106)
    region.api.report("hosp-a", pid, unique("r"))
    down = delivery(region, f"http://127.0.0.1:{free_port()}/messages", RetryPolicy(3, 10, 100))
    start = region.clock.now
    assert down.run_once() == 1
    (m,) = queued(region, principal)
    assert (m.attempts, m.status, m.due_us) == (1, "queued", to_us(start) + 10_000_000)
    assert down.run_once() == 0  # not due before its backoff
    region.clock.now = start + timedelta(seconds=10)
    assert down.run_once() == 1
    (m,) = queued(region, principal)
    assert (m.attempts, m.due_us) == (2, to_us(region.clock.now) + 20_000_000)  # doubled
    region.clock.now += timedelta(seconds=20)
    assert down.run_once() == 1
    (m,) = queued(region, principal)
    assert (m.attempts, m.status, m.last_error) == (3, "dead", "ConnectError")
    state = region.ctx.notifications.state(cli_base.CLI_PRINCIPAL)
    assert state.counts.get("dead") == 1 and [d.pk for d in state.dead] == [m.pk]
    region.clock.now += timedelta(days=1)
    assert down.run_once() == 0  # a dead letter waits for an operator
    assert region.ctx.notifications.retry(cli_base.CLI_PRINCIPAL) == 1
    with LocalGateway(region.var / "gw.jsonl").start() as gw:
        assert delivery(region, gw.url, RetryPolicy(3, 10, 100)).run_once() == 1
        assert [x["id"] for x in gw.received()] == [m.key]
        got = gw.received()[0]
        assert (got["channel"], got["recipient"], got["language"], got["text"]) == ("sms", principal.client_id,
                                                                                    "zh", m.text)  # fmt: skip
    (m,) = queued(region, principal)
    assert m.status == "sent" and m.sent == region.clock.now


def test_a_lost_answer_is_retried_and_the_gateway_keeps_one(region: Region) -> None:
    drain(region)
    principal, pid = patient(region, 107)
    region.api.report("hosp-a", pid, unique("r"))
    with LocalGateway(region.var / "lost.jsonl").start() as gw:
        d = delivery(region, gw.url, RetryPolicy(5, 1, 1), LostAnswers, lose=1)
        assert d.run_once() == 1
        assert queued(region, principal)[0].status == "queued"
        region.clock.now += timedelta(seconds=1)
        assert d.run_once() == 1
        assert len(gw.received()) == 1 and gw.duplicates == 1
    assert queued(region, principal)[0].status == "sent"


def test_two_workers_share_the_queue_and_send_each_message_once(region: Region) -> None:
    drain(region)
    principal, pid = patient(region, 108)
    now = region.clock.now
    with region.ctx.uow.begin() as repo:
        NotificationSql(repo.conn).enqueue([{
            "key": f"k{i}-{pid}", "resource_type": "DiagnosticReport", "resource_id": f"r{i}-{pid}"[:64],
            "version": 1, "channel": "sms", "patient_key": principal.patient_key, "recipient": principal.client_id,
            "language": "zh", "text": "t", "status": "queued", "attempts": 0, "due_us": to_us(now), "claim": None,
            "last_error": None, "created": now, "sent": None} for i in range(300)])  # fmt: skip
    with LocalGateway(region.var / "two.jsonl").start() as gw:
        workers = [delivery(region, gw.url, RetryPolicy()) for _ in range(2)]

        def run(d: Delivery) -> None:
            while d.run_once():
                pass

        threads = [threading.Thread(target=run, args=(d,)) for d in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(gw.received()) == 300 and gw.duplicates == 0
    with region.ctx.uow.begin() as repo:
        assert NotificationSql(repo.conn).counts().get("queued", 0) == 0


def test_the_portal_page_saves_the_choice_and_lists_what_was_sent(region: Region) -> None:
    principal, pid = patient(region, 109, sms=False)
    secret = region.ctx.principals.rotate_secret(principal.client_id)
    browser = TestClient(region.api.client.app)
    form = browser.get("/portal/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token
    browser.post("/portal/login", data={"account": principal.client_id, "secret": secret, "csrf": token.group(1)})
    page = browser.get("/portal/notifications")
    assert page.status_code == 200 and "还没有发送过提醒" in page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    assert browser.post("/portal/notifications", data={"sms": "on", "language": "xx",
                                                       "csrf": csrf.group(1)}).status_code == 400  # fmt: skip
    assert browser.post("/portal/notifications", data={"sms": "on", "language": "zh"}).status_code == 400  # no CSRF
    assert region.ctx.notifications.settings(principal).sms is False
    saved = browser.post("/portal/notifications", data={"sms": "on", "language": "en", "csrf": csrf.group(1)})
    assert saved.status_code == 200 and 'data-testid="notify-saved"' in saved.text
    chosen = region.ctx.notifications.settings(principal)
    assert (chosen.sms, chosen.push, chosen.language) == (True, False, "en")
    region.api.report("hosp-a", pid, unique("r"))
    page = browser.get("/portal/notifications")
    assert "Complete blood count panel lab report from A 医院 is ready" in page.text
    # and "who viewed my records" lists what was sent, with its channel in words
    access = browser.get("/portal/access?lang=en")
    assert access.status_code == 200
    listed = re.findall(r'<tr data-testid="notification">(.*?)</tr>', access.text)
    assert len(listed) == 1 and "SMS" in listed[0] and "Complete blood count panel lab report" in listed[0]


def test_the_cli_shows_dead_letters_and_retries_them(region: Region, monkeypatch: pytest.MonkeyPatch) -> None:
    drain(region)
    principal, pid = patient(region, 110)
    report = region.api.report("hosp-a", pid, unique("r"))
    d = delivery(region, f"http://127.0.0.1:{free_port()}/messages", RetryPolicy(1, 1, 1))
    assert d.run_once() == 1
    monkeypatch.setattr(cli_base, "_context", lambda settings=None: region.ctx)
    runner = CliRunner()
    r = runner.invoke(cli_app, ["notifications", "status"])
    assert r.exit_code == 0, r.output
    (dead,) = region.ctx.notifications.state(cli_base.CLI_PRINCIPAL).dead
    assert dead.resource_id == report["id"]
    assert "dead 1" in r.output and f"│ {dead.pk} " in r.output
    assert principal.client_id not in r.output and "血常规" not in r.output  # no recipient, no text
    r = runner.invoke(cli_app, ["notifications", "retry"])
    assert r.exit_code == 0 and "1 dead letter(s) queued again" in r.output
    assert queued(region, principal)[0].status == "queued"
