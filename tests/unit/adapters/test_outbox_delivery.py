"""The outbox and delivery rules, with the registry played by an httpx mock transport (the real registry is used in
tests/e2e): what is retried, what waits, what is dead-lettered, ordering per key, duplicates, restart."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from adapters.config import OutboxSection, RegistrySection
from adapters.push.client import RegistryClient
from adapters.push.delivery import Deliverer, DeliveryLockedError, backoff
from adapters.push.outbox import Outbox

OK_BUNDLE = {"resourceType": "Bundle", "type": "transaction-response", "entry": []}


def outcome(code: str, text: str) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": text}]}


class FakeRegistry:
    """Answers token requests, and transactions from a script of (status, body) per call (then 200)."""

    def __init__(self, script: list[tuple[int, dict]] | None = None) -> None:
        self.script = list(script or [])
        self.bodies: list[bytes] = []
        self.tokens = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            self.tokens += 1
            return httpx.Response(200, json={"access_token": f"t{self.tokens}", "expires_in": 300})
        self.bodies.append(request.content)
        status, body = self.script.pop(0) if self.script else (200, OK_BUNDLE)
        headers = {"Retry-After": "0"} if status == 429 else {}
        return httpx.Response(status, json=body, headers=headers)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make(
    tmp_path: Path, registry: FakeRegistry, clock: Callable[[], float] | None = None, **outbox: float
) -> tuple[Outbox, Deliverer]:
    box = Outbox(tmp_path / "outbox.sqlite", clock=clock or Clock())
    client = RegistryClient(
        RegistrySection(url="http://registry.test", client_id="c", client_secret="s"),
        httpx.Client(transport=httpx.MockTransport(registry)),
    )
    settings = OutboxSection(path=tmp_path / "outbox.sqlite", concurrency=2, **outbox)
    return box, Deliverer(box, client, settings, clock=clock or box.clock, rng=random.Random(1))


def put(box: Outbox, n: int, key: str = "k") -> bool:
    return box.enqueue(
        source="test", kind="hl7", order_key=key, summary=f"m{n}", digest=f"d{n}", body=orjson.dumps({"n": n})
    )


def drain(d: Deliverer) -> None:
    d.run(threading.Event(), until_empty=True)


def test_delivered_messages_leave_the_outbox(tmp_path: Path) -> None:
    registry = FakeRegistry()
    box, d = make(tmp_path, registry)
    for n in range(5):
        put(box, n, key=f"k{n}")
    drain(d)
    assert box.pending_count() == 0
    assert sorted(orjson.loads(b)["n"] for b in registry.bodies) == [0, 1, 2, 3, 4]
    assert box.status().delivered == 5
    assert registry.tokens == 1  # the token is reused


def test_an_identical_message_is_queued_once(tmp_path: Path) -> None:
    box, _ = make(tmp_path, FakeRegistry())
    assert put(box, 1) is True
    assert put(box, 1) is False
    assert box.pending_count() == 1
    assert box.status().duplicates == 1


def test_messages_of_one_key_go_in_order_one_at_a_time(tmp_path: Path) -> None:
    registry = FakeRegistry()
    box, d = make(tmp_path, registry)
    for n in range(6):
        put(box, n, key="same-report")
    drain(d)
    assert [orjson.loads(b)["n"] for b in registry.bodies] == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 408])
def test_server_errors_and_throttling_are_retried_not_dropped(tmp_path: Path, status: int) -> None:
    registry = FakeRegistry([(status, outcome("exception", "busy"))])
    clock = Clock()
    box, d = make(tmp_path, registry, clock)
    put(box, 1)
    drain(d)  # fails once: stays queued, with a backoff
    st = box.status()
    assert st.pending == 1 and st.retrying == 1 and st.dead == 0
    clock.now += 3600
    drain(d)
    assert box.pending_count() == 0 and len(registry.bodies) == 2


def test_a_network_error_keeps_the_message(tmp_path: Path) -> None:
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 300})
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ConnectError("connection refused")
        return httpx.Response(200, json=OK_BUNDLE)

    clock = Clock()
    box, d = make(tmp_path, FakeRegistry(), clock)
    d.client.http = httpx.Client(transport=httpx.MockTransport(flaky))
    put(box, 1)
    drain(d)
    assert box.pending_count() == 1
    assert "connection refused" in (box.status().last_errors[0][2])
    clock.now += 3600
    drain(d)
    assert box.pending_count() == 0


def test_a_refusal_goes_to_the_dead_letters_with_the_outcome_and_can_be_retried(tmp_path: Path) -> None:
    registry = FakeRegistry([(400, outcome("invalid", "Observation.status: 'finished' is not a valid code"))])
    box, d = make(tmp_path, registry)
    put(box, 1)
    put(box, 2, key="other")
    drain(d)
    assert box.pending_count() == 0
    dead = box.dead_letters()
    assert len(dead) == 1 and dead[0].status == 400
    assert "not a valid code" in dead[0].outcome
    # the same message sent again by the LIS after the fix is not a "duplicate"
    assert put(box, 1) is True
    box.delivered(box.ready(10, set())[0].id)
    assert box.retry_dead() == 1
    drain(d)
    assert box.dead_letters() == [] and box.pending_count() == 0


def test_a_missing_patient_or_study_is_waited_for_then_given_up(tmp_path: Path) -> None:
    missing = outcome("not-found", "conditional reference ImagingStudy?… matched 0 resources, not one")
    registry = FakeRegistry([(412, missing)] * 50)
    clock = Clock()
    box, d = make(tmp_path, registry, clock, wait_for_references_hours=1)
    put(box, 1)
    drain(d)
    st = box.status()
    assert st.waiting == 1 and st.dead == 0
    for _ in range(30):
        clock.now += 600
        drain(d)
    dead = box.dead_letters()
    assert len(dead) == 1 and "gave up waiting" in dead[0].outcome


def test_an_expired_token_is_renewed_once(tmp_path: Path) -> None:
    registry = FakeRegistry([(401, outcome("login", "token expired"))])
    box, d = make(tmp_path, registry)
    put(box, 1)
    drain(d)
    assert box.pending_count() == 0 and registry.tokens == 2


def test_the_outbox_survives_a_restart(tmp_path: Path) -> None:
    box, _ = make(tmp_path, FakeRegistry())
    for n in range(3):
        put(box, n, key=f"k{n}")
    box.close()
    registry = FakeRegistry()
    again, d = make(tmp_path, registry)
    assert again.pending_count() == 3
    drain(d)
    assert again.pending_count() == 0 and len(registry.bodies) == 3


def test_only_one_process_delivers_from_an_outbox(tmp_path: Path) -> None:
    _, first = make(tmp_path, FakeRegistry())
    _, second = make(tmp_path, FakeRegistry())
    first.acquire()
    try:
        with pytest.raises(DeliveryLockedError, match="another hr-adapter process"):
            second.acquire()
    finally:
        first.release()
    second.acquire()
    second.release()


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    rng = random.Random(3)
    delays = [backoff(n, 300, rng) for n in range(1, 12)]
    assert all(0.5 <= d <= 300 for d in delays)
    assert delays[0] <= 2 and delays[-1] >= 150
    assert len({round(backoff(5, 300, rng), 3) for _ in range(20)}) > 10  # jittered
