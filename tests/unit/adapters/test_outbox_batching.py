"""Batched delivery, with the registry played by an httpx mock transport that answers transaction Bundles entry by
entry the way the registry does (an error names ``Bundle.entry[i]``): per-key order, shared entries, per-message
outcomes when a batch is refused, outages and throttling for a whole batch."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from adapters.config import OutboxSection, RegistrySection
from adapters.push.batching import batches
from adapters.push.client import RegistryClient
from adapters.push.delivery import Deliverer
from adapters.push.outbox import Outbox, Pending

MRN = "https://hosp-a.example.cn/fhir/sid/mrn"
REPORT = "https://hosp-a.example.cn/fhir/sid/report-no"


class Clock:
    def __init__(self) -> None:
        self.now = 2_000_000.0

    def __call__(self) -> float:
        return self.now


def patient(mrn: str = "A-1", family: str = "王") -> dict[str, Any]:
    return {
        "fullUrl": f"urn:uuid:patient-{mrn}",
        "resource": {
            "resourceType": "Patient",
            "identifier": [{"system": MRN, "value": mrn}],
            "name": [{"family": family}],
        },
        "request": {"method": "PUT", "url": f"Patient?identifier={MRN}|{mrn}"},
    }


def report(number: str, *, version: int = 1, mrn: str = "A-1", value: str = "5.20") -> dict[str, Any]:
    """A report entry as JSON text, its decimal spelled ``value`` (5.20 is not 5.2 in FHIR)."""
    entry = {
        "fullUrl": f"urn:uuid:report-{number}",
        "resource": {
            "resourceType": "DiagnosticReport",
            "identifier": [{"system": REPORT, "value": number}],
            "status": "final",
            "subject": {"reference": f"urn:uuid:patient-{mrn}"},
            "extension": [{"url": "v", "valueDecimal": "DECIMAL"}],
            "version": version,
        },
        "request": {"method": "PUT", "url": f"DiagnosticReport?identifier={REPORT}|{number}"},
    }
    return {"text": orjson.dumps(entry).decode().replace('"DECIMAL"', value)}


def bundle(*entries: dict[str, Any]) -> bytes:
    parts = [e["text"].encode() if "text" in e else orjson.dumps(e) for e in entries]
    return b'{"resourceType":"Bundle","type":"transaction","entry":[' + b",".join(parts) + b"]}"


class Registry:
    """Takes transaction Bundles; ``refuse(entry) -> (status, code) | None`` decides per entry (the whole Bundle is
    refused for the first refused entry, named as the registry names it unless ``name_entry`` is off); ``script``
    answers the next calls first with (status, headers)."""

    def __init__(
        self,
        refuse: Callable[[dict[str, Any]], tuple[int, str] | None] | None = None,
        *,
        name_entry: bool = True,
        script: list[tuple[int, dict[str, str]]] | None = None,
    ) -> None:
        self.refuse = refuse or (lambda entry: None)
        self.name_entry = name_entry
        self.script = list(script or [])
        self.requests: list[list[dict[str, Any]]] = []
        self.bodies: list[bytes] = []
        self.committed: list[dict[str, Any]] = []  # resources, in commit order

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 300})
        self.bodies.append(request.content)
        entries = orjson.loads(request.content)["entry"]
        self.requests.append(entries)
        if self.script:
            status, headers = self.script.pop(0)
            outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "transient"}]}
            return httpx.Response(status, json=outcome, headers=headers)
        for i, entry in enumerate(entries):
            verdict = self.refuse(entry)
            if verdict is not None:
                status, code = verdict
                where = f"Bundle.entry[{i}]" if self.name_entry else "Bundle"
                issue = {"severity": "error", "code": code, "diagnostics": f"{where}: refused", "expression": [where]}
                return httpx.Response(status, json={"resourceType": "OperationOutcome", "issue": [issue]})
        self.committed += [e["resource"] for e in entries]
        response = [{"response": {"status": "200 OK"}} for _ in entries]
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "transaction-response", "entry": response})

    def reports(self) -> list[tuple[str, int]]:
        return [
            (r["identifier"][0]["value"], r["version"])
            for r in self.committed
            if r["resourceType"] == "DiagnosticReport"
        ]


def make(tmp_path: Path, registry: Registry, clock: Clock, **outbox: Any) -> tuple[Outbox, Deliverer]:
    box = Outbox(tmp_path / "outbox.sqlite", clock=clock)
    client = RegistryClient(
        RegistrySection(url="http://registry.test", client_id="c", client_secret="s"),
        httpx.Client(transport=httpx.MockTransport(registry)),
    )
    settings = OutboxSection(path=tmp_path / "outbox.sqlite", **{"concurrency": 2, "batch_size": 20, **outbox})
    return box, Deliverer(box, client, settings, clock=clock, rng=random.Random(1))


def put(box: Outbox, key: str, body: bytes) -> None:
    assert box.enqueue(source="t", kind="hl7", order_key=key, summary=key, digest=str(hash(body)), body=body)


def drain(d: Deliverer) -> None:
    d.run(threading.Event(), until_empty=True)


def bad(marker: str, status: int = 400, code: str = "invalid") -> Callable[[dict[str, Any]], tuple[int, str] | None]:
    def refuse(entry: dict[str, Any]) -> tuple[int, str] | None:
        ids = entry["resource"].get("identifier") or [{}]
        return (status, code) if ids[0].get("value") == marker else None

    return refuse


def test_a_backlog_goes_in_a_few_bundles(tmp_path: Path) -> None:
    registry = Registry()
    box, d = make(tmp_path, registry, Clock())
    for n in range(45):
        put(box, f"r{n}", bundle(patient(), report(f"R{n}")))
    drain(d)
    st = box.status()
    assert box.pending_count() == 0 and st.delivered == d.delivered == 45 and st.requests == 3
    assert sorted(len(r) for r in registry.requests) == [6, 21, 21]  # 20 reports + their one shared Patient
    assert sorted(registry.reports()) == sorted((f"R{n}", 1) for n in range(45))


def test_versions_of_one_report_never_share_a_bundle_and_arrive_in_queue_order(tmp_path: Path) -> None:
    registry = Registry()
    box, d = make(tmp_path, registry, Clock())
    for version in (1, 2, 3):
        for key in ("A", "B", "C"):
            put(box, key, bundle(patient(), report(key, version=version)))
    drain(d)
    for entries in registry.requests:
        numbers = [
            e["resource"]["identifier"][0]["value"] for e in entries if e["resource"]["resourceType"] != "Patient"
        ]
        assert len(numbers) == len(set(numbers))
    for key in ("A", "B", "C"):
        assert [v for n, v in registry.reports() if n == key] == [1, 2, 3]


def test_a_patient_shared_by_two_messages_is_sent_once_and_decimals_keep_their_spelling(tmp_path: Path) -> None:
    registry = Registry()
    box, d = make(tmp_path, registry, Clock())
    put(box, "r1", bundle(patient(), report("R1", value="5.20")))
    put(box, "r2", bundle(patient(), report("R2", value="135.50")))
    drain(d)
    (entries,) = registry.requests
    assert [e["resource"]["resourceType"] for e in entries] == ["Patient", "DiagnosticReport", "DiagnosticReport"]
    assert b'"valueDecimal":5.20}' in registry.bodies[0] and b'"valueDecimal":135.50}' in registry.bodies[0]


def test_two_versions_of_one_patient_go_in_different_bundles(tmp_path: Path) -> None:
    registry = Registry()
    box, d = make(tmp_path, registry, Clock())
    put(box, "r1", bundle(patient(family="王"), report("R1")))
    put(box, "r2", bundle(patient(family="汪"), report("R2")))  # the name corrected at the LIS in between
    put(box, "r3", bundle(patient(family="王"), report("R3")))
    drain(d)
    assert sorted(len(r) for r in registry.requests) == [2, 3]
    for entries in registry.requests:
        assert len([e for e in entries if e["resource"]["resourceType"] == "Patient"]) == 1
    assert sorted(n for n, _ in registry.reports()) == ["R1", "R2", "R3"]


@pytest.mark.parametrize("name_entry", [True, False], ids=["entry-named", "entry-not-named"])
def test_one_bad_message_is_dead_lettered_alone_and_its_neighbours_are_delivered(
    tmp_path: Path, name_entry: bool
) -> None:
    registry = Registry(bad("R7"), name_entry=name_entry)
    box, d = make(tmp_path, registry, Clock(), concurrency=1)
    for n in range(12):
        put(box, f"r{n}", bundle(patient(), report(f"R{n}")))
    drain(d)
    dead = box.dead_letters()
    assert [x.summary for x in dead] == ["r7"] and dead[0].status == 400 and "refused" in dead[0].outcome
    assert box.pending_count() == 0 and d.delivered == 11 and d.dead == 1
    assert sorted(n for n, _ in registry.reports()) == sorted(f"R{n}" for n in range(12) if n != 7)
    # the dead letter is the message as it was queued, and it was refused when sent alone
    assert box.dead_body(dead[0].id) in registry.bodies
    if name_entry:
        assert len(registry.requests) == 3  # the batch, the rest without r7, r7 alone
    else:
        assert len(registry.requests) <= 2 * 4 + 1  # halving: a few more requests, still per-message outcomes


def test_two_bad_messages_in_one_batch_are_both_found(tmp_path: Path) -> None:
    registry = Registry(
        lambda e: (422, "processing") if e["resource"].get("identifier", [{}])[0].get("value") in ("R2", "R9") else None
    )
    box, d = make(tmp_path, registry, Clock(), concurrency=1)
    for n in range(12):
        put(box, f"r{n}", bundle(patient(), report(f"R{n}")))
    drain(d)
    assert sorted(x.summary for x in box.dead_letters()) == ["r2", "r9"]
    assert d.delivered == 10 and box.pending_count() == 0


def test_a_message_whose_study_is_missing_waits_alone(tmp_path: Path) -> None:
    clock = Clock()
    missing = {"R3"}

    def refuse(entry: dict[str, Any]) -> tuple[int, str] | None:
        value = entry["resource"].get("identifier", [{}])[0].get("value")
        return (412, "not-found") if value in missing else None

    registry = Registry(refuse)
    box, d = make(tmp_path, registry, clock)
    for n in range(6):
        put(box, f"r{n}", bundle(patient(), report(f"R{n}")))
    drain(d)
    st = box.status()
    assert st.pending == 1 and st.waiting == 1 and st.dead == 0 and d.delivered == 5
    assert st.last_errors[0][1] == "r3"
    missing.clear()  # the study arrives
    clock.now += 3600
    drain(d)
    assert box.pending_count() == 0 and d.delivered == 6


def test_a_conflict_on_a_batch_is_settled_per_message(tmp_path: Path) -> None:
    registry = Registry(script=[(409, {})])
    box, d = make(tmp_path, registry, Clock(), concurrency=1)
    for n in range(4):
        put(box, f"r{n}", bundle(patient(), report(f"R{n}")))
    drain(d)
    assert d.delivered == 4 and box.dead_letters() == []
    assert [len(r) for r in registry.requests] == [5, 3, 3]  # refused whole, then in halves


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_or_an_outage_holds_the_whole_batch_for_the_retry_after(tmp_path: Path, status: int) -> None:
    clock = Clock()
    registry = Registry(script=[(status, {"Retry-After": "120"})])
    box, d = make(tmp_path, registry, clock)
    for n in range(5):
        put(box, f"r{n}", bundle(patient(), report(f"R{n}")))
    drain(d)
    st = box.status()
    assert len(registry.requests) == 1  # no hammering, no taking the batch apart
    assert st.pending == 5 and st.retrying == 5 and st.dead == 0 and st.waiting == 0
    assert st.next_attempt_in is not None and st.next_attempt_in >= 120
    clock.now += 60
    drain(d)
    assert len(registry.requests) == 1  # still within the Retry-After
    clock.now += 300
    drain(d)
    assert box.pending_count() == 0 and len(registry.requests) == 2


def test_a_message_that_is_not_a_transaction_bundle_goes_alone_untouched(tmp_path: Path) -> None:
    registry = Registry()
    box, d = make(tmp_path, registry, Clock())
    odd = b'{"resourceType":"Bundle","type":"transaction","id":"x","entry":[' + report("R9")["text"].encode() + b"]}"
    put(box, "odd", odd)
    for n in range(3):
        put(box, f"r{n}", bundle(patient(), report(f"R{n}")))
    drain(d)
    assert odd in registry.bodies
    assert sorted(len(r) for r in registry.requests) == [1, 4]


def test_batches_respect_the_entry_limit_and_the_batch_size() -> None:
    messages = [Pending(n, f"k{n}", f"m{n}", bundle(patient(f"P{n}"), report(f"R{n}")), 0, None) for n in range(10)]
    assert [len(b.messages) for b in batches(messages, size=4)] == [4, 4, 2]
    assert [len(b.messages) for b in batches(messages, size=10, max_entries=5)] == [2, 2, 2, 2, 2]
    assert [len(b.messages) for b in batches(messages, size=1)] == [1] * 10
    assert all(b.body == m.body for b, m in zip(batches(messages, size=1), messages, strict=True))


def test_batch_size_one_sends_each_message_as_it_was_queued(tmp_path: Path) -> None:
    registry = Registry()
    box, d = make(tmp_path, registry, Clock(), batch_size=1)
    queued = [bundle(patient(), report(f"R{n}")) for n in range(3)]
    for n, body in enumerate(queued):
        put(box, f"r{n}", body)
    drain(d)
    assert sorted(registry.bodies) == sorted(queued)
