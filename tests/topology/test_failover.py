"""The scaled-out registry under failures, with real processes (scripts/topology.py): etcd, two PostgreSQL nodes
managed by Patroni in synchronous mode, HAProxy, two registry nodes reading from the standby (replica reads on, the
write marks in the machine's Redis).

Under a steady load — writer threads pushing idempotent transaction Bundles (an Observation by conditional update
or by conditional create with ``ifNoneExist``, keyed by its identifier) and a thread checking orders
(``$recognition-check`` and CDS Hooks ``order-sign``) — every attempt is recorded, and a write counts as acknowledged
when its answer was 2xx. A client retries whatever failed (a transport error, 502/503/504) until it is acknowledged.

* one registry node killed: the balancer routes around it, writes go on;
* the primary's machine killed (Patroni and postgres, kill -9): the synchronous standby is promoted, writes pause and
  resume; the pause (first failed write → first acknowledged write after it) is printed.

Afterwards every acknowledged write is searched by its identifier through the registry: exactly one Observation,
with the value written. Through the primary's failover a hospital's hr-adapter also accepts HL7 messages into its
durable outbox and delivers them (tests/topology/outbox_feed.py): every message it accepted is in the registry
exactly once, none dead. Then the old primary's machine comes back: Patroni rewinds it (pg_rewind) onto the new
primary's timeline and it rejoins as the synchronous standby, holding what the new primary holds.

    PYTHONPATH=. .venv/bin/python -m pytest -m topology tests/topology -s
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from catalog.codes import HR_MARK
from scripts.bench_common import national_id
from scripts.topology import Topology
from scripts.topology_front import replica_reads
from scripts.topology_processes import missing
from tests.topology.outbox_feed import REPORT_NUMBERS, OutboxFeed

pytestmark = [pytest.mark.topology, pytest.mark.timeout(280)]


@pytest.fixture(scope="module", autouse=True)
def _components() -> None:
    """etcd, Patroni, HAProxy and PostgreSQL 15: skipped with the reason where absent — under CI a failure."""
    why = missing()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no topology here: {why}; CI must have it (./scripts/test installs it)")
        pytest.skip(f"no topology here: {why}")


OBS = "http://hosp-a.example/obs"
MRN = "http://hosp-a.example/mrn"
NATIONAL = "https://hr-registry.org.cn/fhir/sid/cn-resident-id"
ITEMS = "https://hr-registry.org.cn/fhir/CodeSystem/recognized-items"
REDIS = "redis://127.0.0.1:6379/0"  # the machine's Redis: the read-your-writes marks both nodes share
FHIR_JSON = "application/fhir+json"
RETRIED = {502, 503, 504, 429}


@dataclass(frozen=True)
class Attempt:
    kind: str  # write | check
    key: str
    started: float
    ended: float
    status: int  # the HTTP status; 0 for a transport error
    detail: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass
class Load:
    """Writer threads and an order-checking thread against the balancer, each retrying until acknowledged."""

    base: str
    tokens: dict[str, str]
    prefix: str
    writers: int = 3
    attempts: list[Attempt] = field(default_factory=list)
    acked: dict[str, float] = field(default_factory=dict)  # identifier value -> the value written
    unexpected: list[Attempt] = field(default_factory=list)  # answers no retry can mend (4xx, 500)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        """Each writer's patient, at hospital A (whose results the writer pushes) and at hospital B (whose orders are
        checked: B must know the patient), then the threads."""
        with httpx.Client(base_url=self.base, timeout=15) as http:
            for i in range(self.writers):
                for org in ("hosp-a", "hosp-b"):
                    mrn = f"T{self.prefix}{i}"
                    system = f"http://{org}.example/mrn"
                    patient = {
                        "resourceType": "Patient",
                        "identifier": [{"system": system, "value": mrn}, {"system": NATIONAL, "value": self.nid(i)}],
                        "gender": "female",
                        "managingOrganization": {"reference": f"Organization/{org}"},
                    }
                    request = {"method": "PUT", "url": f"Patient?identifier={system}|{mrn}"}
                    bundle = {"resourceType": "Bundle", "type": "transaction",
                              "entry": [{"resource": patient, "request": request}]}  # fmt: skip
                    assert self._until_acked(http, "write", mrn, "/fhir", bundle, f"{org}-system")
        assert not self.unexpected, self.unexpected
        for i in range(self.writers):
            self._threads.append(threading.Thread(target=self._writer, args=(i,), daemon=True))
        self._threads.append(threading.Thread(target=self._checker, daemon=True))
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        assert not any(t.is_alive() for t in self._threads), "a load thread did not stop"

    def nid(self, writer: int) -> str:
        """The national ID of writer ``writer``'s patient (distinct per load)."""
        return national_id(7000 + 100 * ord(self.prefix[0]) + writer)

    def _headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}", "Content-Type": FHIR_JSON, "Accept": FHIR_JSON}

    def _until_acked(self, http: httpx.Client, kind: str, key: str, path: str, body: dict[str, Any], who: str) -> bool:
        """POST ``body`` until a 2xx answer (True), or until the load stops (False)."""
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                r = http.post(path, json=body, headers=self._headers(who))
                status, detail = r.status_code, ("" if r.is_success else r.text[:300])
            except httpx.HTTPError as exc:
                status, detail = 0, type(exc).__name__
            attempt = Attempt(kind, key, started, time.monotonic(), status, detail)
            with self._lock:
                self.attempts.append(attempt)
                if not attempt.ok and status and status not in RETRIED:
                    self.unexpected.append(attempt)
            if attempt.ok:
                return True
            time.sleep(0.1)
        return False

    def _writer(self, i: int) -> None:
        with httpx.Client(base_url=self.base, timeout=15) as http:
            mrn = f"T{self.prefix}{i}"
            n = 0
            while not self._stop.is_set():
                key = f"{self.prefix}-{i}-{n}"
                value = float(n % 90 + 5)
                bundle = observation_bundle(key, value, mrn, conditional_create=n % 2 == 1)
                if self._until_acked(http, "write", key, "/fhir", bundle, "hosp-a-system"):
                    with self._lock:
                        self.acked[key] = value
                n += 1
                time.sleep(0.02)

    def _checker(self) -> None:
        with httpx.Client(base_url=self.base, timeout=15) as http:
            n = 0
            while not self._stop.is_set():
                patient = self.nid(n % self.writers)
                if n % 2 == 0:
                    path, body, who = (
                        "/fhir/ServiceRequest/$recognition-check",
                        check_parameters(patient),
                        "hosp-b-system",
                    )
                else:
                    path, body, who = "/cds-services/hr-order-sign", order_sign(patient, n), "dr-b"
                self._until_acked(http, "check", f"check-{n}", path, body, who)
                n += 1
                time.sleep(0.05)

    # ---------------------------------------------------------------- what the records say
    def writes(self) -> list[Attempt]:
        with self._lock:
            return sorted((a for a in self.attempts if a.kind == "write"), key=lambda a: a.started)

    def failed(self, since: float) -> list[Attempt]:
        with self._lock:
            return [a for a in self.attempts if not a.ok and a.ended >= since]

    def acks_after(self, since: float, kind: str = "write") -> list[Attempt]:
        with self._lock:
            return [a for a in self.attempts if a.ok and a.kind == kind and a.started >= since]


def observation_bundle(key: str, value: float, mrn: str, *, conditional_create: bool) -> dict[str, Any]:
    observation = {
        "resourceType": "Observation",
        "meta": {"tag": [{"system": HR_MARK, "code": "HR"}]},
        "identifier": [{"system": OBS, "value": key}],
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "6690-2"}]},
        "subject": {"reference": f"Patient?identifier={MRN}|{mrn}"},
        "effectiveDateTime": "2026-03-01T08:00:00+08:00",
        "valueQuantity": {"value": value, "unit": "10*9/L", "system": "http://unitsofmeasure.org", "code": "10*9/L"},
        "performer": [{"reference": "Organization/hosp-a"}],
    }
    if conditional_create:
        request = {"method": "POST", "url": "Observation", "ifNoneExist": f"identifier={OBS}|{key}"}
    else:
        request = {"method": "PUT", "url": f"Observation?identifier={OBS}|{key}"}
    entry = {"fullUrl": "urn:uuid:6c3b1a4e-0000-4000-8000-000000000001", "resource": observation, "request": request}
    return {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}


def _order(oid: str) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "id": oid,
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/ehr"},
        "code": {"coding": [{"system": ITEMS, "code": "L001"}]},
    }


def check_parameters(patient_national_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patientIdentifier", "valueIdentifier": {"system": NATIONAL, "value": patient_national_id}},
            {"name": "order", "resource": _order("o-1")},
        ],
    }


def order_sign(patient_national_id: str, n: int) -> dict[str, Any]:
    return {
        "hook": "order-sign",
        "hookInstance": f"6c3b1a4e-0000-4000-8000-{n:012d}",
        "context": {
            "userId": "Practitioner/p1",
            "patientId": "ehr",
            "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": _order("o-1")}]},
        },
        "prefetch": {
            "patient": {"resourceType": "Patient", "identifier": [{"system": NATIONAL, "value": patient_national_id}]}
        },
    }


def assert_every_ack_is_there_once(topo: Topology, acked: dict[str, float]) -> None:
    """Search each acknowledged identifier through the balancer: one Observation, with the value written."""
    headers = {"Authorization": f"Bearer {topo.seed_data.tokens['hosp-a-system']}", "Accept": FHIR_JSON}

    def found(key: str) -> tuple[str, list[float]]:
        with httpx.Client(base_url=topo.balancer, timeout=15) as http:
            r = http.get("/fhir/Observation", params={"identifier": f"{OBS}|{key}", "_count": "10"}, headers=headers)
            assert r.status_code == 200, r.text
            entries = [e for e in r.json().get("entry", []) if e.get("search", {}).get("mode", "match") == "match"]
            return key, [e["resource"]["valueQuantity"]["value"] for e in entries]

    with ThreadPoolExecutor(4) as pool:
        results = dict(pool.map(found, sorted(acked)))
    missing_ = sorted(k for k, values in results.items() if not values)
    duplicated = sorted(k for k, values in results.items() if len(values) > 1)
    wrong = sorted(k for k, values in results.items() if len(values) == 1 and values[0] != acked[k])
    assert not missing_, f"{len(missing_)} acknowledged writes are gone: {missing_[:10]}"
    assert not duplicated, f"{len(duplicated)} identifiers have more than one Observation: {duplicated[:10]}"
    assert not wrong, f"{len(wrong)} Observations do not hold the value written: {wrong[:10]}"


def assert_standby_matches(primary: Any, standby: Any, timeout: float = 30) -> None:
    """Once the standby has replayed the primary's WAL up to now, both have the same stored resources."""

    def query(node: Any, sql: str) -> Any:
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{node.pg_port}/registry", autocommit=True) as conn:
            return conn.execute(sql).fetchone()

    lsn = query(primary, "SELECT pg_current_wal_lsn()")[0]
    deadline = time.monotonic() + timeout
    while query(standby, f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn")[0] is not True:
        assert time.monotonic() < deadline, f"the standby did not replay up to {lsn} within {timeout:.0f} s"
        time.sleep(0.2)
    stored = "SELECT count(*), max(pk), count(DISTINCT (type, id)) FROM resource"
    assert query(standby, stored) == query(primary, stored)


def _report(text: str) -> None:
    print(f"\n[topology] {text}", flush=True)  # noqa: T201 - the measurement is the point of the run


@pytest.fixture(scope="module")
def topo() -> Iterator[Topology]:
    """The topology of docs/deploy.md with reads from the standby on: searches and the order check's look-ups go to
    it while it has the reader's writes, and to the primary while it is gone (promoted, rewinding, rejoining)."""
    with Topology(registries=2) as topology:
        topology.restart_registries({"REGISTRY_DATABASE_REPLICA_URL": topology.standby_url,
                                     "REGISTRY_SHARED_STATE_URL": REDIS})  # fmt: skip
        yield topology


def test_a_killed_registry_node_is_routed_around(topo: Topology) -> None:
    load = Load(topo.balancer, topo.seed_data.tokens, prefix="r").start()
    try:
        time.sleep(4)
        offered = replica_reads(topo.registries, topo.seed_data.tokens["admin"])
        assert offered["standby"] > 0, f"no read went to the standby: {offered}"
        assert load.acked, "no write was acknowledged before the kill"
        killed = time.monotonic()
        topo.kill_registry(1)
        time.sleep(6)
    finally:
        load.stop()
    after = load.acks_after(killed + 2)
    failures = load.failed(killed)
    _report(
        f"registry node killed: {len(load.acked)} writes acknowledged, {len(after)} of them started > 2 s after the "
        f"kill; {len(failures)} failed attempts seen by clients (retried): "
        f"{Counter((a.status, a.detail[:60]) for a in failures).most_common()}; order checks acknowledged after: "
        f"{len(load.acks_after(killed + 2, 'check'))}; reads on the standby / the primary before the kill: "
        f"{offered['standby']:.0f} / {offered['primary']:.0f}"
    )
    assert not load.unexpected, load.unexpected[:5]
    assert len(after) >= 10, "writes did not go on through the surviving node"
    assert load.acks_after(killed + 2, "check"), "order checks did not go on through the surviving node"
    assert_every_ack_is_there_once(topo, load.acked)

    # back to two nodes for what follows
    topo.registries[1].start()
    topo.registries[1].wait_ready(90)
    topo.wait_for_balancer(30)


def assert_every_report_is_there_once(topo: Topology, numbers: list[str]) -> None:
    """Each report an adapter accepted, searched by its number through the balancer: exactly one."""
    headers = {"Authorization": f"Bearer {topo.seed_data.tokens['hosp-a-system']}", "Accept": FHIR_JSON}

    def count(number: str) -> tuple[str, int]:
        with httpx.Client(base_url=topo.balancer, timeout=15) as http:
            r = http.get("/fhir/DiagnosticReport", params={"identifier": f"{REPORT_NUMBERS}|{number}",
                                                           "_summary": "count"}, headers=headers)  # fmt: skip
            assert r.status_code == 200, r.text
            return number, int(r.json()["total"])

    with ThreadPoolExecutor(4) as pool:
        counts = dict(pool.map(count, numbers))
    assert not [n for n, c in counts.items() if c == 0], "accepted reports missing from the registry"
    assert not [n for n, c in counts.items() if c > 1], "reports delivered twice"


def test_a_killed_primary_is_replaced_and_no_acknowledged_write_is_lost(topo: Topology, tmp_path: Path) -> None:
    load = Load(topo.balancer, topo.seed_data.tokens, prefix="p").start()
    feed = OutboxFeed(tmp_path / "adapter", topo.balancer, topo.seed_data.adapter_secret).start()
    try:
        time.sleep(4)
        assert load.acked, "no write was acknowledged before the kill"
        old = topo.kill_primary()
        killed = time.monotonic()
        new = topo.wait_for_leader(other_than=old.member, timeout=60)
        promoted = time.monotonic()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(load.acks_after(promoted)) < 30:
            time.sleep(0.5)
        time.sleep(2)
        drained = feed.drain(timeout=90)
    finally:
        load.stop()
        feed.close()
    # The pause: from the start of the first write that failed once the primary was gone to the acknowledgement of
    # the first write started after the kill (none started after it can commit before a standby is promoted).
    writes = load.writes()
    first_failure = next((a for a in writes if not a.ok and a.ended >= killed), None)
    assert first_failure is not None, "no write failed after the primary was killed"
    resumed = min((a for a in writes if a.ok and a.started >= killed), key=lambda a: a.ended, default=None)
    assert resumed is not None, "writes did not resume after the failover"
    pause = resumed.ended - first_failure.started
    failures = load.failed(killed)
    _report(
        f"primary {old.member} killed; {new.member} leads {promoted - killed:.1f} s after the kill; write pause "
        f"(first failed write -> first acknowledged write) {pause:.1f} s; first acknowledgement "
        f"{resumed.ended - killed:.1f} s after the kill; {len(failures)} failed attempts, statuses "
        f"{Counter((a.status, a.detail[:60]) for a in failures).most_common(4)}; {len(load.acked)} writes "
        f"acknowledged; cluster now {topo.cluster()}"
    )
    assert not load.unexpected, load.unexpected[:5]
    assert pause < 45, f"writes paused {pause:.1f} s"
    assert load.acks_after(promoted, "check"), "order checks did not resume"
    assert_every_ack_is_there_once(topo, load.acked)
    # the adapter's outbox rode through it: every message it accepted delivered, once
    _report(f"adapter outbox: {len(feed.accepted)} messages accepted, {drained.delivered} delivered, "
            f"{drained.dead} dead, {drained.pending} pending")  # fmt: skip
    assert feed.accepted and drained.pending == 0 and drained.dead == 0 and feed.dead_letters == 0, drained
    assert drained.delivered == len(feed.accepted), drained
    assert_every_report_is_there_once(topo, feed.accepted)
    # the old primary's machine comes back: rewound to the new timeline, it is the synchronous standby again and holds
    # what the new primary holds
    started = time.monotonic()
    topo.rejoin(old)
    rewound = [line for line in old.tail(400).splitlines() if "rewind" in line.lower()]
    _report(f"{old.member} rejoined as the synchronous standby {time.monotonic() - started:.1f} s after its restart; "
            f"Patroni on pg_rewind: {rewound[-3:] or 'not needed (no diverged WAL)'}")  # fmt: skip
    assert_standby_matches(new, old)
