"""Patient notifications end to end (docs/notifications.md): HL7 v2 ORU^R01 through ``hr-adapter run`` into a live
registry (uvicorn) whose worker delivers to the local gateway over HTTP — one message with the right words; a
sensitive item never named; the gateway down for a while, then back → delivered once; the registry restarted with
messages still queued → delivered once after it is back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from registry.auth import PrincipalKind
from registry.services.audit import AuditContext
from registry.services.notifications.local_gateway import LocalGateway
from registry.store.notification_sql import NotificationSql
from tests.conftest import free_port
from tests.e2e.support import (
    NATIONAL_ID,
    AdapterProcess,
    RegistryProcess,
    ack_code,
    adapter_config,
    mllp_send,
    wait_until,
)
from tests.e2e.test_adapter_to_registry import YESTERDAY, dated

NATIONAL = "https://hr-registry.org.cn/fhir/sid/cn-resident-id"
SECRET = "e2e-gateway-secret"
CBC_TEXT = "【区域检查检验结果互认平台】您在A 医院的血常规（全血细胞计数）检验报告已出，请登录平台查看。"
GENERIC = "【区域检查检验结果互认平台】您有一份新的检查检验报告，请登录平台查看。"


def syphilis_test() -> bytes:
    """A Treponema pallidum antibody report (catalog L152, marked sensitive) for the sample patient."""
    segments = [
        "MSH|^~\\&|LIS|HOSP_A|HR-ADAPTER|REGION|20251103111500+0800||ORU^R01^ORU_R01|A0902|P|2.5.1|||||CHN|"
        "UNICODE UTF-8",
        "PID|1||A-123^^^HOSPA^MR~110105198503120020^^^CHN^NNCHN||王^小明||19850312|M",
        "PV1|1|O",
        "ORC|RE|PL-7902|R-2025-0902",
        "OBR|1|PL-7902|R-2025-0902|TPAB^梅毒螺旋体抗体^L|||20251103083000|||||||||||||||20251103100000|||F",
        "OBX|1|ST|TPAB^梅毒螺旋体抗体^L||阳性||||||F",
    ]
    return "\r".join(segments).replace("20251103", YESTERDAY).encode("utf-8")


@pytest.fixture
def gateway_port(monkeypatch: pytest.MonkeyPatch) -> int:
    """The registry process is pointed at a local gateway on this port (started by each test when it wants)."""
    port = free_port()
    for name, value in {
        "REGISTRY_NOTIFY_GATEWAY_URL": f"http://127.0.0.1:{port}/messages",
        "REGISTRY_NOTIFY_GATEWAY_SECRET": SECRET,
        "REGISTRY_NOTIFY_POLL_SECONDS": "0.2",
        "REGISTRY_NOTIFY_BACKOFF_SECONDS": "0.5",
        "REGISTRY_NOTIFY_MAX_BACKOFF_SECONDS": "1",
        "REGISTRY_NOTIFY_TIMEOUT_SECONDS": "2",
    }.items():
        monkeypatch.setenv(name, value)
    return port


@pytest.fixture
def registry(tmp_path: Path, gateway_port: int) -> Iterator[RegistryProcess]:
    reg = RegistryProcess(tmp_path / "registry")
    reg.setup_region()
    ctx = reg.ctx
    account = ctx.principals.add(PrincipalKind.PATIENT, "wang", "患者", patient_key=ctx.identity.master_key(
        NATIONAL, NATIONAL_ID)).principal  # fmt: skip
    ctx.notifications.choose(account, AuditContext("e2e", account, "update"), sms=True, push=False, language="zh")
    reg.start()
    yield reg
    reg.close()


@pytest.fixture
def adapter(registry: RegistryProcess, tmp_path: Path) -> Iterator[tuple[AdapterProcess, int]]:
    mllp = free_port()
    config = adapter_config(tmp_path / "adapter", registry, mllp_port=mllp)
    process = AdapterProcess(registry, config, tmp_path / "adapter.log")
    process.start(wait_for_port=mllp)
    yield process, mllp
    process.stop()


def gateway(tmp_path: Path, port: int) -> LocalGateway:
    return LocalGateway(tmp_path / "gateway.jsonl", port=port, secret=SECRET).start()


def queue(registry: RegistryProcess) -> list[Any]:
    with registry.ctx.uow.begin() as repo:
        return NotificationSql(repo.conn).messages()


def settled(gw: LocalGateway, registry: RegistryProcess, n: int) -> list[dict[str, Any]]:
    """Wait for ``n`` messages and for the registry's queue to hold nothing unsent, then hand back what the gateway
    has (still exactly ``n``)."""
    wait_until(lambda: len(gw.received()) >= n, 60, f"{n} message(s) at the gateway", interval=0.2)
    wait_until(lambda: all(m.status == "sent" for m in queue(registry)), 10, "the queue settled", interval=0.2)
    got = gw.received()
    assert len(got) == n, got
    return got


def test_a_report_through_the_hl7_adapter_reaches_the_gateway_once_and_a_sensitive_one_unnamed(
    registry: RegistryProcess, adapter: tuple[AdapterProcess, int], gateway_port: int, tmp_path: Path
) -> None:
    _process, mllp = adapter
    with gateway(tmp_path, gateway_port) as gw:
        assert ack_code(mllp_send(mllp, dated("oru_cbc_final.hl7"))) == "AA"
        (message,) = settled(gw, registry, 1)
        assert (message["channel"], message["recipient"], message["language"]) == ("sms", "wang", "zh")
        assert message["text"] == CBC_TEXT
        assert message["link"] == f"{registry.base}/portal"
        # the same message again from the LIS: no new version, no new notification
        assert ack_code(mllp_send(mllp, dated("oru_cbc_final.hl7"))) == "AA"
        assert ack_code(mllp_send(mllp, syphilis_test())) == "AA"
        first, sensitive = settled(gw, registry, 2)
        assert first == message
        assert sensitive["text"] == GENERIC
        for word in ("梅毒", "TP", "A 医院", "阳性", "王"):
            assert word not in sensitive["text"]
    log = (registry.var / "server.log").read_text(encoding="utf-8")
    assert "王" not in log and "检验报告" not in log and NATIONAL_ID not in log


def test_a_gateway_outage_and_a_registry_restart_lose_nothing_and_send_nothing_twice(
    registry: RegistryProcess, adapter: tuple[AdapterProcess, int], gateway_port: int, tmp_path: Path
) -> None:
    _process, mllp = adapter
    # the gateway is down: the report is accepted, its message waits and is retried
    assert ack_code(mllp_send(mllp, dated("oru_cbc_final.hl7"))) == "AA"
    wait_until(lambda: any(m.attempts >= 2 for m in queue(registry)), 60, "failed attempts", interval=0.2)
    with gateway(tmp_path, gateway_port) as gw:
        (message,) = settled(gw, registry, 1)
        assert message["text"] == CBC_TEXT
    # down again; a correction arrives; the registry is restarted with its message still queued
    assert ack_code(mllp_send(mllp, dated("oru_cbc_corrected.hl7", **{"20251103": YESTERDAY}))) == "AA"
    wait_until(lambda: len(queue(registry)) == 2 and queue(registry)[0].attempts >= 1, 60, "the correction queued")
    registry.stop()
    with gateway(tmp_path, gateway_port) as gw:  # the same record file: it knows the first message
        assert len(gw.received()) == 1
        registry.start()
        first, correction = settled(gw, registry, 2)
        assert first == message
        assert correction["text"] == CBC_TEXT.replace("已出", "已更正")
        assert gw.duplicates == 0
