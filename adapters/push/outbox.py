"""The durable outbox: every message is committed here (SQLite, WAL, ``synchronous=FULL``) before the sender gets its
acknowledgement, and leaves only when the registry has committed it — or, for a message the registry will never take,
moves to the dead-letter table with the registry's OperationOutcome, where it stays visible and can be retried.

Delivery order: messages about the same business key (a report number, a study UID) are delivered in the order they
arrived, one at a time; different keys go in parallel (adapters/push/delivery.py). A message identical to one already
accepted (same bytes — an LIS resending after a lost ACK) is acknowledged again but not queued twice.

The file (adapters/push/store.py) has a versioned schema (adapters/push/schema.py) and holds the adapter's other local
state too (adapters/push/local_state.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.push.local_state import LocalState
from adapters.push.schema import OutboxError

__all__ = ["DeadLetter", "Outbox", "OutboxError", "Pending", "Status"]

SEEN_DAYS = 30


@dataclass(frozen=True, slots=True)
class Pending:
    id: int
    order_key: str
    summary: str
    body: bytes
    attempts: int
    waiting_since: float | None


@dataclass(frozen=True, slots=True)
class Status:
    pending: int
    waiting: int  # pending messages whose patient/study the registry does not have yet
    retrying: int  # pending messages that failed at least once
    dead: int
    delivered: int
    requests: int  # registry transactions that delivered them (fewer than ``delivered`` when batches were sent)
    accepted: int
    duplicates: int
    oldest_pending_age: float | None
    next_attempt_in: float | None
    last_errors: list[tuple[int, str, str]]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    failed_at: float
    source: str
    summary: str
    status: int | None
    outcome: str
    attempts: int


class Outbox(LocalState):
    """Thread-safe (one connection, one lock); other processes may read and write the same file concurrently."""

    # ------------------------------------------------------------------------------------------------ queueing
    def enqueue(
        self,
        *,
        source: str,
        kind: str,
        order_key: str,
        summary: str,
        digest: str,
        body: bytes,
        unmapped: list[tuple[str, str, str, str]] | None = None,
    ) -> bool:
        """Commit a message durably; False when an identical message was already accepted (nothing queued)."""
        now = self.clock()
        with self._tx() as db:
            if db.execute("SELECT 1 FROM seen WHERE digest = ?", (digest,)).fetchone():
                self._bump(db, "duplicates")
                return False
            db.execute("INSERT INTO seen (digest, at) VALUES (?, ?)", (digest, now))
            db.execute(
                "INSERT INTO message (received_at, source, kind, order_key, summary, digest, body, next_attempt) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (now, source, kind, order_key, summary, digest, body, now),
            )
            self._bump(db, "accepted")
            for system, code, display, place in unmapped or []:
                self._note_unmapped(db, system, code, display, place, now)
        return True

    # ------------------------------------------------------------------------------------------------ delivery
    def ready(self, limit: int, exclude_keys: set[str]) -> list[Pending]:
        """The oldest deliverable messages: due now, and first in line for their key."""
        now = self.clock()
        rows = self._read(
            "SELECT id, order_key, summary, body, attempts, waiting_since FROM message m WHERE next_attempt <= ? "
            "AND NOT EXISTS (SELECT 1 FROM message e WHERE e.order_key = m.order_key AND e.id < m.id) "
            "ORDER BY id LIMIT ?",
            (now, limit + len(exclude_keys)),
        )
        out = [Pending(*r) for r in rows if r[1] not in exclude_keys]
        return out[:limit]

    def delivered(self, message_id: int) -> None:
        self.delivered_many([message_id])

    def delivered_many(self, ids: list[int]) -> None:
        """The registry has committed these messages (one batch): they leave together, in one local commit."""
        with self._tx() as db:
            db.executemany("DELETE FROM message WHERE id = ?", [(i,) for i in ids])
            self._bump(db, "delivered", len(ids))
            self._bump(db, "requests")

    def retry_later(self, message_id: int, delay: float, error: str, *, waiting: bool) -> None:
        now = self.clock()
        with self._tx() as db:
            db.execute(
                "UPDATE message SET attempts = attempts + 1, next_attempt = ?, last_error = ?, "
                "waiting_since = CASE WHEN ? THEN COALESCE(waiting_since, ?) ELSE NULL END WHERE id = ?",
                (now + delay, error[:2000], waiting, now, message_id),
            )

    def retry_later_many(self, ids: list[int], delay: float, error: str) -> None:
        """A batch the registry could not take now (down, overloaded, throttling): every message tries again later."""
        now = self.clock()
        with self._tx() as db:
            db.executemany(
                "UPDATE message SET attempts = attempts + 1, next_attempt = ?, last_error = ?, waiting_since = NULL "
                "WHERE id = ?",
                [(now + delay, error[:2000], i) for i in ids],
            )

    def dead(self, message_id: int, status: int | None, outcome: str) -> None:
        now = self.clock()
        with self._tx() as db:
            row = db.execute(
                "SELECT received_at, source, kind, order_key, summary, digest, body, attempts "
                "FROM message WHERE id = ?",
                (message_id,),
            ).fetchone()
            if row is None:
                return
            db.execute(
                "INSERT INTO dead_letter (id, received_at, failed_at, source, kind, order_key, summary, digest, body, "
                "attempts, status, outcome) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (message_id, row[0], now, *row[1:7], row[7] + 1, status, outcome[:8000]),
            )
            db.execute("DELETE FROM message WHERE id = ?", (message_id,))
            db.execute("DELETE FROM seen WHERE digest = ?", (row[5],))  # a corrected resend is not a duplicate
            self._bump(db, "dead")

    def retry_dead(self, ids: list[int] | None = None) -> int:
        """Move dead letters (all, or these ids) back to the queue, due now; returns how many."""
        now = self.clock()
        with self._tx() as db:
            rows = db.execute(
                "SELECT id, received_at, source, kind, order_key, summary, digest, body FROM dead_letter ORDER BY id"
            ).fetchall()
            if ids is not None:
                wanted = set(ids)
                rows = [r for r in rows if r[0] in wanted]
            for r in rows:
                # keeps its id, so it goes back to its place in its key's order
                db.execute(
                    "INSERT INTO message (id, received_at, source, kind, order_key, summary, digest, body, "
                    "next_attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*r, now),
                )
                db.execute("INSERT OR IGNORE INTO seen (digest, at) VALUES (?, ?)", (r[6], now))
                db.execute("DELETE FROM dead_letter WHERE id = ?", (r[0],))
        return len(rows)

    def retry_now(self) -> int:
        """Make every pending message due now (after fixing a registry outage or credentials)."""
        with self._tx() as db:
            return db.execute(
                "UPDATE message SET next_attempt = ? WHERE next_attempt > ?", (self.clock(), self.clock())
            ).rowcount

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = self._read(
            "SELECT id, failed_at, source, summary, status, outcome, attempts FROM dead_letter ORDER BY id LIMIT ?",
            (limit,),
        )
        return [DeadLetter(*r) for r in rows]

    def dead_body(self, dead_id: int) -> bytes | None:
        rows = self._read("SELECT body FROM dead_letter WHERE id = ?", (dead_id,))
        return bytes(rows[0][0]) if rows else None

    def pending_count(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM message")[0][0])

    def next_due(self) -> float | None:
        value = self._read("SELECT MIN(next_attempt) FROM message")[0][0]
        return float(value) if value is not None else None

    def status(self) -> Status:
        now = self.clock()
        pending, waiting, retrying, oldest, due = self._read(
            "SELECT COUNT(*), COUNT(waiting_since), SUM(attempts > 0), MIN(received_at), MIN(next_attempt) FROM message"
        )[0]
        dead = self._read("SELECT COUNT(*) FROM dead_letter")[0][0]
        counters = dict(self._read("SELECT name, value FROM counter"))
        errors = self._read(
            "SELECT id, summary, last_error FROM message WHERE last_error IS NOT NULL ORDER BY id LIMIT 5"
        )
        return Status(
            pending=pending,
            waiting=waiting,
            retrying=int(retrying or 0),
            dead=dead,
            delivered=counters.get("delivered", 0),
            requests=counters.get("requests", 0),
            accepted=counters.get("accepted", 0),
            duplicates=counters.get("duplicates", 0),
            oldest_pending_age=(now - oldest) if oldest is not None else None,
            next_attempt_in=max(0.0, due - now) if due is not None else None,
            last_errors=[(r[0], r[1], r[2]) for r in errors],
        )

    def prune(self) -> None:
        cutoff = self.clock() - SEEN_DAYS * 86400
        with self._tx() as db:
            db.execute("DELETE FROM seen WHERE at < ?", (cutoff,))
