"""Delivery from the outbox to the registry, in batches, with retries, backoff and jitter.

Up to ``concurrency`` requests are in flight, each a transaction Bundle of up to ``batch_size`` messages of distinct
order keys (adapters/push/batching.py says what may share a Bundle); a message is sent alone when nothing else is due.
Outcomes are per message — a batch that is refused for any reason but the registry's unavailability is taken apart
until each message has been answered alone, and only then do these rules apply to it:

- success → the message leaves the outbox (the registry has committed the whole Bundle);
- 409 (a concurrent write collided) → retried a few times (``CONFLICT_ATTEMPTS``), then dead-lettered;
- network error, 5xx, 408, 429 → retried with exponential backoff and jitter (capped at ``max_backoff_seconds``,
  at least the registry's ``Retry-After``); while the registry is unreachable the whole deliverer pauses instead of
  hammering it message by message; such messages are never given up (for a batch, every message of it);
- the registry lacks the patient or study the message refers to (issue code ``not-found``) → retried the same way for
  up to ``wait_for_references_hours``, then dead-lettered;
- any other 4xx → dead letter with the registry's OperationOutcome (``hr-adapter outbox status`` lists it,
  ``hr-adapter outbox retry`` sends it again).

A resend after a lost answer is harmless: the adapters' entries are conditional (``PUT Type?identifier=…``), so an
unchanged resource makes no new version (FHIR R4 http.html §3.1.0.5.2 conditional update).

Only one process delivers from an outbox at a time (an advisory lock next to the file).
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from adapters.config import OutboxSection
from adapters.errors import AdapterError, RegistryRejectedError, RegistryUnavailableError
from adapters.push.batching import Batch, alone, batches, merge
from adapters.push.client import RegistryClient
from adapters.push.outbox import Outbox, Pending

log = logging.getLogger("hr_adapter.delivery")


CONFLICT_ATTEMPTS = 8
"""A 409 (concurrent writes collided) is retried this many times before the message is dead-lettered."""


class DeliveryLockedError(AdapterError):
    pass


def backoff(attempts: int, cap: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: half fixed, half random ("equal jitter"), 1 s doubling up to ``cap``."""
    ceiling = min(cap, 2.0 ** min(attempts, 30))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


@dataclass(slots=True)
class DrainResult:
    delivered: int
    dead: int
    pending: int


class Deliverer:
    def __init__(
        self,
        outbox: Outbox,
        client: RegistryClient,
        settings: OutboxSection,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.outbox = outbox
        self.client = client
        self.settings = settings
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - retry jitter, not cryptography
        self._pause_until = 0.0
        self._outage_attempts = 0
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._lock_file: IO[str] | None = None
        self.delivered = 0
        self.dead = 0

    # ------------------------------------------------------------------------------------------------ the lock
    def acquire(self) -> None:
        path = Path(str(self.outbox.path) + ".lock")
        handle = path.open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise DeliveryLockedError(
                f"another hr-adapter process (pid {holder}) is delivering from {self.outbox.path}; stop it first"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle

    def release(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def wake(self) -> None:
        """Called after a new message is queued: deliver it without waiting for the next poll."""
        self._wake.set()

    # ------------------------------------------------------------------------------------------------ one message
    def _send(self, message: Pending) -> float | None:
        """Deliver one message alone and record its own outcome; the pause when the registry is unavailable."""
        try:
            self.client.transaction(message.body)
        except RegistryRejectedError as exc:
            log.warning("message %s (%s) refused by the registry for good: %s", message.id, message.summary, exc)
            self._dead(message, exc.status, exc.outcome)
        except RegistryUnavailableError as exc:
            now = self.clock()
            if exc.conflict:
                if message.attempts + 1 >= CONFLICT_ATTEMPTS:
                    self._dead(message, 409, str(exc))
                    return None
                delay = backoff(message.attempts + 1, self.settings.max_backoff_seconds, self.rng)
                self.outbox.retry_later(message.id, delay, str(exc), waiting=False)
                return None
            if exc.waiting:
                limit = self.settings.wait_for_references_hours * 3600
                if message.waiting_since is not None and now - message.waiting_since >= limit:
                    self._dead(message, None, f"gave up waiting for a referenced resource: {exc}")
                    return None
                delay = backoff(message.attempts + 1, self.settings.max_backoff_seconds, self.rng)
                self.outbox.retry_later(message.id, delay, str(exc), waiting=True)
                log.info(
                    "message %s waits for a resource the registry lacks (retry in %.0f s): %s", message.id, delay, exc
                )
                return None
            delay = self._unavailable(exc)
            self.outbox.retry_later(message.id, delay, str(exc), waiting=False)
            return delay
        else:
            self._delivered([message.id])
        return None

    def _dead(self, message: Pending, status: int | None, outcome: str) -> None:
        self.outbox.dead(message.id, status, outcome)
        with self._lock:
            self.dead += 1

    def _delivered(self, ids: list[int]) -> None:
        self.outbox.delivered_many(ids)
        with self._lock:
            self.delivered += len(ids)
            self._outage_attempts = 0

    def _unavailable(self, exc: RegistryUnavailableError) -> float:
        """The registry cannot take anything now (down, overloaded, throttling): the whole deliverer pauses, at least
        as long as its ``Retry-After`` asks (RFC 9110 §10.2.3; RFC 6585 §4 for 429)."""
        with self._lock:
            self._outage_attempts += 1
            delay = backoff(self._outage_attempts, self.settings.max_backoff_seconds, self.rng)
            if exc.retry_after is not None:
                delay = max(delay, min(exc.retry_after, self.settings.max_backoff_seconds))
            self._pause_until = max(self._pause_until, self.clock() + delay)
        log.warning("registry unavailable, retrying in %.1f s: %s", delay, exc)
        return delay

    # ------------------------------------------------------------------------------------------------ a batch
    def _deliver(self, batch: Batch) -> None:
        """Deliver a batch; a refused batch is taken apart until each message has its own outcome (adapters/push/
        batching.py). The refusal's entry index, when it names one message, sets that message apart at once; otherwise
        the batch is halved. Only a message sent alone is ever dead-lettered or held back as waiting."""
        work = [batch]
        while work:
            part = work.pop(0)
            if len(part.messages) == 1:
                delay = self._send(part.messages[0])
            else:
                delay = None
                try:
                    self.client.transaction(part.body)
                except (RegistryRejectedError, RegistryUnavailableError) as exc:
                    if isinstance(exc, RegistryUnavailableError) and not (exc.conflict or exc.waiting):
                        delay = self._unavailable(exc)
                        self.outbox.retry_later_many(part.ids, delay, str(exc))
                    else:
                        work[:0] = self._split(part, str(exc))
                else:
                    self._delivered(part.ids)
            if delay is not None and work:  # the registry went away: the rest waits as well
                self.outbox.retry_later_many([i for p in work for i in p.ids], delay, "not sent: registry unavailable")
                return

    @staticmethod
    def _split(batch: Batch, outcome: str) -> list[Batch]:
        messages = list(batch.messages)
        suspect = batch.suspect(outcome)
        if suspect is not None:
            rest = messages[:suspect] + messages[suspect + 1 :]
            log.info(
                "a batch of %d messages was refused for message %s; the others go on without it",
                len(messages),
                messages[suspect].id,
            )
            return [*merge(rest), alone(messages[suspect])]
        half = len(messages) // 2
        log.info("a batch of %d messages was refused; sending it in halves to find the cause", len(messages))
        return [*merge(messages[:half]), *merge(messages[half:])]

    # ------------------------------------------------------------------------------------------------ loops
    def run(self, stop: threading.Event, *, idle_poll: float = 1.0, until_empty: bool = False) -> DrainResult:
        """Deliver until ``stop`` is set (or, with ``until_empty``, until nothing is due any more): up to
        ``concurrency`` requests in flight, each a batch of up to ``batch_size`` messages of distinct order keys."""
        concurrency = self.settings.concurrency
        size = self.settings.batch_size
        futures: dict[Future[None], set[str]] = {}
        with ThreadPoolExecutor(concurrency, thread_name_prefix="deliver") as pool:
            while not stop.is_set():
                for f in [f for f in futures if f.done()]:
                    keys = futures.pop(f)
                    with self._lock:
                        self._in_flight -= keys
                    f.result()  # re-raise anything unexpected (an outbox write error)
                now = self.clock()
                free = concurrency - len(futures)
                ready: list[Pending] = []
                if free > 0 and now >= self._pause_until:
                    with self._lock:
                        busy = set(self._in_flight)
                    ready = self.outbox.ready(free * size, busy)
                    firsts: dict[str, Pending] = {}
                    for message in ready:
                        firsts.setdefault(message.order_key, message)
                    for batch in batches(list(firsts.values()), size=size)[:free]:
                        keys = {m.order_key for m in batch.messages}
                        with self._lock:
                            self._in_flight |= keys
                        futures[pool.submit(self._deliver, batch)] = keys
                if until_empty and not futures and not ready:
                    due = self.outbox.next_due()
                    if due is None or due > now + 0.5 or self._pause_until > now:
                        break  # empty, or what is left is not due (waiting, backing off, registry down)
                if futures:
                    self._wait_any(futures, 0.05 if ready else 0.2)
                else:
                    wait = idle_poll
                    if self._pause_until > now:
                        wait = min(wait, self._pause_until - now)
                    self._wake.wait(max(0.01, wait))
                    self._wake.clear()
            for f in futures:
                f.result()
        return DrainResult(self.delivered, self.dead, self.outbox.pending_count())

    @staticmethod
    def _wait_any(futures: dict[Future[None], set[str]], timeout: float) -> None:
        from concurrent.futures import FIRST_COMPLETED, wait

        wait(list(futures), timeout=timeout, return_when=FIRST_COMPLETED)
