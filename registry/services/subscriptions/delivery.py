"""Sending rest-hook notifications (FHIR R4 subscription.html §2.46.7.1), like the adapter's outbox: nothing is lost
across a registry restart or a receiver outage, retries back off exponentially, repeated failures become dead
letters, and a notification delivered is never sent again.

- no ``channel.payload``: ``POST [endpoint]`` with no body; with one: the resource version ``PUT
  [endpoint]/[type]/[id]`` with that content type. Every ``channel.header`` line is sent as a header.
- A notification is claimed with a lease (:mod:`registry.store.subscription_sql`), sent outside any transaction with
  a bounded timeout, and its outcome recorded. 2xx is delivered; anything else (an error status, a refused
  connection, a timeout) is retried after ``base × 2^(failures − 1)`` seconds (at most ``max``); after
  ``max_attempts`` the row is a dead letter, the Subscription goes to ``error`` with ``Subscription.error`` saying
  why, and the next notifications are still tried — the first success sets it ``active`` again.
- Before sending, the policy is asked again whether the subscriber may still read the resource (its client enabled,
  the patient still in its care context); if not, the row is ``withheld`` and nothing is sent.
- One notification in flight per subscription, in queued order. A registry killed between the receiver's answer
  and the record sends that one notification again when its lease ends (at least once; a PUT of the same version is
  idempotent at the receiver).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo

import httpx
import orjson

from registry.fhir.extract import to_us
from registry.services import policy
from registry.services.subscriptions.matching import subscriber_of
from registry.services.subscriptions.status import write_status
from registry.store.clients import ClientStore
from registry.store.repository import UnitOfWork
from registry.store.subscription_sql import Claimed, SubscriptionSql

log = logging.getLogger("registry.subscriptions")


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """``REGISTRY_SUBSCRIPTION_*``: attempts before a dead letter, backoff, timeout, lease and batch."""

    max_attempts: int = 6
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 600.0
    timeout_seconds: float = 10.0
    lease_seconds: float = 60.0
    batch: int = 20

    def backoff_us(self, failures: int) -> int:
        return int(min(self.retry_base_seconds * 2 ** max(failures - 1, 0), self.retry_max_seconds) * 1_000_000)


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    error: str | None = None


class DeliveryWorker:
    def __init__(self, uow: UnitOfWork, http: httpx.Client, clock: Callable[[], datetime], rules: DeliveryPolicy,
                 *, local_tz: tzinfo, base_url: str) -> None:  # fmt: skip
        self.uow = uow
        self.http = http
        self.clock = clock
        self.rules = rules
        self.local_tz = local_tz
        self.base_url = base_url

    def run_once(self) -> int:
        """Send every notification due now (one per subscription); returns how many were attempted."""
        now = self.clock()
        with self.uow.begin() as repo:
            claimed = SubscriptionSql(repo.conn).claim(now_us=to_us(now), lease_us=int(self.rules.lease_seconds * 1e6),
                                                       limit=self.rules.batch)  # fmt: skip
        for item in claimed:
            self._deliver(item)
        return len(claimed)

    def drain(self, rounds: int = 50) -> int:
        """Run until nothing is due now (tests, and the CLI); returns how many were attempted."""
        total = 0
        for _ in range(rounds):
            done = self.run_once()
            total += done
            if not done:
                break
        return total

    def _deliver(self, item: Claimed) -> None:
        with self.uow.begin() as repo:
            subs = SubscriptionSql(repo.conn)
            subscriber = subscriber_of(ClientStore(repo.conn).get(item.client_id))
            current = repo.get(item.resource_type, item.resource_id)
            if (
                subscriber is None
                or current is None
                or not policy.may_receive(subscriber, current, repo.has_care_context)
            ):
                subs.withhold(item.pk, "the subscriber may no longer read this resource")
                return
            body: bytes | None = None
            if item.payload:
                version = repo.version(item.resource_type, item.resource_id, item.version)
                body = version.body if version is not None else None
                if body is None:
                    subs.withhold(item.pk, "the version is no longer held")
                    return
        outcome = self._send(item, body)
        now = self.clock()
        with self.uow.begin() as repo:
            subs = SubscriptionSql(repo.conn)
            if outcome.ok:
                subs.delivered(item.pk, now=now)
                subs.set_subscription_state(item.subscription_id, status="active", failures=0, error=None, now=now)
                if item.status != "active":
                    write_status(repo, item.subscription_id, "active", None, now=now, local_tz=self.local_tz,
                                 base_url=self.base_url)  # fmt: skip
                return
            failures = item.failures + 1
            dead = item.attempts + 1 >= self.rules.max_attempts
            error = outcome.error or "failed"
            subs.failed(item.pk, error=error, due_us=to_us(now) + self.rules.backoff_us(item.attempts + 1), dead=dead)
            status = item.status
            text = None
            if dead:
                status = "error"
                text = (f"notification of {item.resource_type}/{item.resource_id}/_history/{item.version} failed "
                        f"{item.attempts + 1} times; last: {error}")[:1000]  # fmt: skip
                write_status(repo, item.subscription_id, "error", text, now=now, local_tz=self.local_tz,
                             base_url=self.base_url)  # fmt: skip
                log.warning("subscription %s: notification %s is a dead letter (%s)", item.subscription_id, item.pk,
                            error)  # fmt: skip
            subs.set_subscription_state(item.subscription_id, status=status, failures=failures,
                                        error=text if dead else None, now=now)  # fmt: skip

    def _send(self, item: Claimed, body: bytes | None) -> Outcome:
        headers: dict[str, str] = {}
        for line in orjson.loads(item.headers):
            name, _, value = str(line).partition(":")
            headers[name.strip()] = value.strip()
        try:
            if body is None:
                response = self.http.post(item.endpoint, content=b"", headers=headers,
                                          timeout=self.rules.timeout_seconds)  # fmt: skip
            else:
                headers.setdefault("Content-Type", item.payload or "application/fhir+json")
                url = f"{item.endpoint.rstrip('/')}/{item.resource_type}/{item.resource_id}"
                response = self.http.put(url, content=body, headers=headers, timeout=self.rules.timeout_seconds)
        except httpx.HTTPError as exc:
            return Outcome(False, f"{type(exc).__name__}: {str(exc)[:200]}")
        if 200 <= response.status_code < 300:
            return Outcome(True)
        return Outcome(False, f"HTTP {response.status_code}")


class DeliveryLoop:
    """The worker in a thread of the registry process (started and stopped with the app): it wakes when a write
    queued notifications, and otherwise every ``poll_seconds`` for retries that came due."""

    def __init__(self, worker: DeliveryWorker, poll_seconds: float) -> None:
        self.worker = worker
        self.poll_seconds = poll_seconds
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="subscription-delivery", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        if self.thread is not None:
            self.thread.join(timeout=self.worker.rules.timeout_seconds + 5)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                while not self.stopping.is_set() and self.worker.run_once():
                    pass
            except Exception as exc:  # the database away for a moment: try again at the next round
                log.warning("subscription delivery round failed: %s", type(exc).__name__)
            self.wake.wait(self.poll_seconds)
            self.wake.clear()
