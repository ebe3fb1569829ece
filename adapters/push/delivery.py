"""Delivery from the outbox to the registry, with retries, backoff and jitter.

- success → the message leaves the outbox (the registry has committed the whole Bundle);
- 409 (a concurrent write collided) → retried a few times (``CONFLICT_ATTEMPTS``), then dead-lettered;
- network error, 5xx, 408, 429 → retried with exponential backoff and jitter (capped at ``max_backoff_seconds``,
  at least the registry's ``Retry-After``); while the registry is unreachable the whole deliverer pauses instead of
  hammering it message by message; such messages are never given up;
- the registry lacks the patient or study the message refers to (issue code ``not-found``) → retried the same way for
  up to ``wait_for_references_hours``, then dead-lettered;
- any other 4xx → dead letter with the registry's OperationOutcome (``hr-adapter outbox status`` lists it,
  ``hr-adapter outbox retry`` sends it again).

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
    def _send(self, message: Pending) -> None:
        try:
            self.client.transaction(message.body)
        except RegistryRejectedError as exc:
            log.warning("message %s (%s) refused by the registry for good: %s", message.id, message.summary, exc)
            self.outbox.dead(message.id, exc.status, exc.outcome)
            self.dead += 1
        except RegistryUnavailableError as exc:
            now = self.clock()
            if exc.conflict:
                if message.attempts + 1 >= CONFLICT_ATTEMPTS:
                    self.outbox.dead(message.id, 409, str(exc))
                    self.dead += 1
                    return
                delay = backoff(message.attempts + 1, self.settings.max_backoff_seconds, self.rng)
                self.outbox.retry_later(message.id, delay, str(exc), waiting=False)
                return
            if exc.waiting:
                limit = self.settings.wait_for_references_hours * 3600
                if message.waiting_since is not None and now - message.waiting_since >= limit:
                    self.outbox.dead(message.id, None, f"gave up waiting for a referenced resource: {exc}")
                    self.dead += 1
                    return
                delay = backoff(message.attempts + 1, self.settings.max_backoff_seconds, self.rng)
                self.outbox.retry_later(message.id, delay, str(exc), waiting=True)
                log.info(
                    "message %s waits for a resource the registry lacks (retry in %.0f s): %s", message.id, delay, exc
                )
                return
            with self._lock:
                self._outage_attempts += 1
                delay = backoff(self._outage_attempts, self.settings.max_backoff_seconds, self.rng)
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, self.settings.max_backoff_seconds))
                self._pause_until = max(self._pause_until, now + delay)
            self.outbox.retry_later(message.id, delay, str(exc), waiting=False)
            log.warning("registry unavailable, retrying in %.1f s: %s", delay, exc)
        else:
            self.outbox.delivered(message.id)
            self.delivered += 1
            with self._lock:
                self._outage_attempts = 0

    # ------------------------------------------------------------------------------------------------ loops
    def run(self, stop: threading.Event, *, idle_poll: float = 1.0, until_empty: bool = False) -> DrainResult:
        """Deliver until ``stop`` is set (or, with ``until_empty``, until nothing is due any more)."""
        concurrency = self.settings.concurrency
        futures: dict[Future[None], str] = {}
        with ThreadPoolExecutor(concurrency, thread_name_prefix="deliver") as pool:
            while not stop.is_set():
                for f in [f for f in futures if f.done()]:
                    key = futures.pop(f)
                    with self._lock:
                        self._in_flight.discard(key)
                    f.result()  # re-raise anything unexpected (an outbox write error)
                now = self.clock()
                free = concurrency - len(futures)
                batch: list[Pending] = []
                if free > 0 and now >= self._pause_until:
                    with self._lock:
                        busy = set(self._in_flight)
                    batch = self.outbox.ready(free, busy)
                    seen: set[str] = set()
                    for message in batch:
                        if message.order_key in seen:
                            continue
                        seen.add(message.order_key)
                        with self._lock:
                            self._in_flight.add(message.order_key)
                        futures[pool.submit(self._send, message)] = message.order_key
                if until_empty and not futures and not batch:
                    due = self.outbox.next_due()
                    if due is None or due > now + 0.5 or self._pause_until > now:
                        break  # empty, or what is left is not due (waiting, backing off, registry down)
                if futures:
                    self._wait_any(futures, 0.05 if batch else 0.2)
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
    def _wait_any(futures: dict[Future[None], str], timeout: float) -> None:
        from concurrent.futures import FIRST_COMPLETED, wait

        wait(list(futures), timeout=timeout, return_when=FIRST_COMPLETED)
