"""Delivering queued notifications to the gateway (docs/notifications.md §delivery), like the adapter's outbox:
batches claimed from the queue, each message POSTed with a bounded timeout, exponential backoff after a failure, a
dead letter after ``max_attempts`` (or at once when the gateway refuses the message itself with a 4xx), and the
idempotency key on every attempt so a repeat after a lost answer is no duplicate at the gateway.

The worker runs in the registry process (started and stopped with the app) and reads time from the injected clock;
tests call :meth:`Delivery.run_once` themselves. Logs carry counts and error classes, never a text or a recipient."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import httpx

from registry.fhir.bundle import instant
from registry.fhir.extract import to_us
from registry.settings import Settings
from registry.store.notification_sql import Message, NotificationSql
from registry.store.repository import UnitOfWork

log = logging.getLogger("registry.notifications")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    base_seconds: float = 5.0
    max_seconds: float = 3600.0

    def delay(self, attempts: int) -> float:
        """Seconds before the next attempt after ``attempts`` failed ones: base, 2·base, 4·base… up to the cap."""
        return float(min(self.max_seconds, self.base_seconds * 2 ** max(0, attempts - 1)))


class Gateway:
    """The gateway seam: ``POST`` one JSON message with the bearer secret; 2xx is accepted (docs/notifications.md
    §contract). ``client`` is passed in (its timeouts bound every attempt)."""

    def __init__(self, client: httpx.Client, url: str, secret: str | None, portal_url: str) -> None:
        self.client, self.url, self.secret, self.portal_url = client, url, secret, portal_url

    def payload(self, message: Message, *, now: datetime) -> dict[str, object]:
        return {
            "id": message.key,
            "channel": message.channel,
            "recipient": message.recipient,
            "language": message.language,
            "text": message.text,
            "link": self.portal_url,
            "created_at": instant(message.created),
            "sent_at": instant(now),
            "attempt": message.attempts,
        }

    def send(self, message: Message, *, now: datetime) -> tuple[bool, str | None]:
        """(delivered, why not); a refusal the gateway means (4xx but 408/429) is final."""
        headers = {"Idempotency-Key": message.key}
        if self.secret:
            headers["Authorization"] = f"Bearer {self.secret}"
        try:
            r = self.client.post(self.url, json=self.payload(message, now=now), headers=headers)
        except httpx.HTTPError as exc:
            return False, type(exc).__name__
        if 200 <= r.status_code < 300:
            return True, None
        final = 400 <= r.status_code < 500 and r.status_code not in (408, 429)
        return False, f"{'refused' if final else 'failed'}: HTTP {r.status_code}"


class Delivery:
    """One pass over the due messages: claim a batch, send it, record what happened."""

    def __init__(
        self,
        uow: UnitOfWork,
        gateway: Gateway,
        clock: Callable[[], datetime],
        retry: RetryPolicy = RetryPolicy(),
        *,
        batch_size: int = 200,
        lease_seconds: float = 300.0,
        concurrency: int = 8,
    ) -> None:
        self.uow, self.gateway, self.clock, self.retry = uow, gateway, clock, retry
        self.batch_size, self.lease_seconds, self.concurrency = batch_size, lease_seconds, concurrency

    def run_once(self) -> int:
        """Deliver one batch; returns how many messages it took (0: nothing due)."""
        now = self.clock()
        token = secrets.token_hex(16)
        with self.uow.begin() as repo:
            batch = NotificationSql(repo.conn).claim(
                now_us=to_us(now), lease_until_us=to_us(now) + int(self.lease_seconds * 1e6),
                limit=self.batch_size, token=token,
            )  # fmt: skip
        if not batch:
            return 0
        if self.concurrency > 1 and len(batch) > 1:
            with ThreadPoolExecutor(min(self.concurrency, len(batch))) as pool:
                outcomes = list(pool.map(lambda m: self.gateway.send(m, now=now), batch))
        else:
            outcomes = [self.gateway.send(m, now=now) for m in batch]
        done = self.clock()
        sent = [m.pk for m, (ok, _) in zip(batch, outcomes, strict=True) if ok]
        failed = [(m, why or "failed") for m, (ok, why) in zip(batch, outcomes, strict=True) if not ok]
        with self.uow.begin() as repo:
            sql = NotificationSql(repo.conn)
            sql.mark_sent(sent, now=done, token=token)
            for m, why in failed:
                dead = why.startswith("refused") or m.attempts >= self.retry.max_attempts
                due = to_us(done) + int(self.retry.delay(m.attempts) * 1e6)
                sql.mark_failed(m.pk, token=token, due_us=due, error=why, dead=dead)
        if failed:
            log.warning("notification gateway: %d of %d messages not delivered (%s)", len(failed), len(batch),
                        ", ".join(sorted({why for _, why in failed})))  # fmt: skip
        return len(batch)


class Worker:
    """The delivery loop on a daemon thread, polling every ``poll_seconds`` while nothing is due."""

    def __init__(self, delivery: Delivery, poll_seconds: float = 1.0) -> None:
        self.delivery, self.poll_seconds = delivery, poll_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="notification-delivery", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                took = self.delivery.run_once()
            except Exception as exc:
                log.warning("notification delivery paused: %s", type(exc).__name__)
                took = 0
            if took == 0:
                self._stop.wait(self.poll_seconds)


def worker_for(settings: Settings, uow: UnitOfWork, clock: Callable[[], datetime]) -> Worker | None:
    """The delivery worker the settings describe, or None without a gateway URL (messages then wait queued)."""
    if not settings.notify_gateway_url:
        return None
    client = httpx.Client(
        timeout=httpx.Timeout(settings.notify_timeout_seconds),
        limits=httpx.Limits(max_connections=settings.notify_concurrency),
    )
    gateway = Gateway(client, settings.notify_gateway_url, settings.notify_gateway_secret,
                      f"{settings.public_base_url}/portal")  # fmt: skip
    retry = RetryPolicy(settings.notify_max_attempts, settings.notify_backoff_seconds,
                        settings.notify_max_backoff_seconds)  # fmt: skip
    delivery = Delivery(
        uow,
        gateway,
        clock,
        retry,
        batch_size=settings.notify_batch_size,
        lease_seconds=settings.notify_lease_seconds,
        concurrency=settings.notify_concurrency,
    )
    return Worker(delivery, settings.notify_poll_seconds)
