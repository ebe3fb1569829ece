"""The durable outbox: every message is committed here (SQLite, WAL, ``synchronous=FULL``) before the sender gets its
acknowledgement, and leaves only when the registry has committed it — or, for a message the registry will never take,
moves to the dead-letter table with the registry's OperationOutcome, where it stays visible and can be retried.

Delivery order: messages about the same business key (a report number, a study UID) are delivered in the order they
arrived, one at a time; different keys go in parallel. A message identical to one already accepted (same bytes — an
LIS resending after a lost ACK) is acknowledged again but not queued twice.

The same file holds the adapter's other local state: the unmapped codes it has seen, DICOM instances received by
C-STORE and not yet sent as a study, and what was last sent for each study (so a pull sends only what changed).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.errors import AdapterError

SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    order_key TEXT NOT NULL,
    summary TEXT NOT NULL,
    digest TEXT NOT NULL,
    body BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    waiting_since REAL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS ix_message_key ON message (order_key, id);
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY,
    received_at REAL NOT NULL,
    failed_at REAL NOT NULL,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    order_key TEXT NOT NULL,
    summary TEXT NOT NULL,
    digest TEXT NOT NULL,
    body BLOB NOT NULL,
    attempts INTEGER NOT NULL,
    status INTEGER,
    outcome TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS seen (digest TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS unmapped (
    system TEXT NOT NULL,
    code TEXT NOT NULL,
    display TEXT NOT NULL,
    place TEXT NOT NULL,
    count INTEGER NOT NULL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY (system, code)
);
CREATE TABLE IF NOT EXISTS dicom_instance (
    sop_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    received_at REAL NOT NULL,
    header BLOB NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS ix_dicom_instance_study ON dicom_instance (study_uid);
CREATE TABLE IF NOT EXISTS study_sent (study_uid TEXT PRIMARY KEY, digest TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS pull_mark (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

SEEN_DAYS = 30


class OutboxError(AdapterError):
    """The outbox file cannot be opened or written (disk full, permissions, corruption)."""


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


class Outbox:
    """Thread-safe (one connection, one lock); other processes may read and write the same file concurrently."""

    def __init__(self, path: Path, *, clock: Any = time.time) -> None:
        self.path = path
        self.clock = clock
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # names and national IDs: the owner's only
            if path.stat().st_mode & 0o077:  # (SQLite gives its -wal and -shm files this mode; DESIGN.md §6)
                path.chmod(0o600)
            self._db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"cannot open the outbox {path}: {exc}") from None
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise OutboxError(f"the outbox {self.path} cannot be written: {exc}") from None

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise OutboxError(f"the outbox {self.path} cannot be read: {exc}") from None

    @staticmethod
    def _bump(db: sqlite3.Connection, name: str, by: int = 1) -> None:
        db.execute(
            "INSERT INTO counter (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = value + ?",
            (name, by, by),
        )

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

    def note_unmapped(self, items: list[tuple[str, str, str, str]]) -> None:
        """Record codes that mapped to nothing (also for messages that were refused for it)."""
        if not items:
            return
        now = self.clock()
        with self._tx() as db:
            for system, code, display, place in items:
                self._note_unmapped(db, system, code, display, place, now)

    @staticmethod
    def _note_unmapped(db: sqlite3.Connection, system: str, code: str, display: str, place: str, now: float) -> None:
        db.execute(
            "INSERT INTO unmapped (system, code, display, place, count, first_seen, last_seen) "
            "VALUES (?, ?, ?, ?, 1, ?, ?) ON CONFLICT (system, code) DO UPDATE SET count = count + 1, "
            "last_seen = excluded.last_seen, display = excluded.display, place = excluded.place",
            (system, code, display, place, now, now),
        )

    def unmapped(self) -> list[tuple[str, str, str, str, int, float]]:
        rows = self._read("SELECT system, code, display, place, count, last_seen FROM unmapped ORDER BY count DESC")
        return [tuple(r) for r in rows]

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
        with self._tx() as db:
            db.execute("DELETE FROM message WHERE id = ?", (message_id,))
            self._bump(db, "delivered")

    def retry_later(self, message_id: int, delay: float, error: str, *, waiting: bool) -> None:
        now = self.clock()
        with self._tx() as db:
            db.execute(
                "UPDATE message SET attempts = attempts + 1, next_attempt = ?, last_error = ?, "
                "waiting_since = CASE WHEN ? THEN COALESCE(waiting_since, ?) ELSE NULL END WHERE id = ?",
                (now + delay, error[:2000], waiting, now, message_id),
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

    # ------------------------------------------------------------------------------------------------ DICOM state
    def stage_instance(self, sop_uid: str, study_uid: str, header: bytes) -> None:
        """Keep a received instance's header (durably, before the C-STORE is answered)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO dicom_instance (sop_uid, study_uid, received_at, header, sent) VALUES (?, ?, ?, ?, 0) "
                "ON CONFLICT (sop_uid) DO UPDATE SET header = excluded.header, received_at = excluded.received_at, "
                "sent = 0",
                (sop_uid, study_uid, self.clock(), header),
            )

    def stable_studies(self, quiet_seconds: float) -> list[str]:
        """Studies with unsent instances and no new instance for ``quiet_seconds``."""
        cutoff = self.clock() - quiet_seconds
        rows = self._read(
            "SELECT study_uid FROM dicom_instance GROUP BY study_uid HAVING MIN(sent) = 0 AND MAX(received_at) <= ?",
            (cutoff,),
        )
        return [r[0] for r in rows]

    def study_headers(self, study_uid: str) -> list[bytes]:
        return [bytes(r[0]) for r in self._read("SELECT header FROM dicom_instance WHERE study_uid = ?", (study_uid,))]

    def enqueue_study(self, study_uid: str, digest: str, **message: Any) -> bool:
        """Queue a study's bundle and mark its staged instances sent, in one transaction; False when the study was
        already sent with exactly this content."""
        now = self.clock()
        with self._tx() as db:
            db.execute("UPDATE dicom_instance SET sent = 1 WHERE study_uid = ?", (study_uid,))
            row = db.execute("SELECT digest FROM study_sent WHERE study_uid = ?", (study_uid,)).fetchone()
            if row is not None and row[0] == digest:
                return False
            db.execute(
                "INSERT INTO study_sent (study_uid, digest, at) VALUES (?, ?, ?) ON CONFLICT (study_uid) "
                "DO UPDATE SET digest = excluded.digest, at = excluded.at",
                (study_uid, digest, now),
            )
            db.execute(
                "INSERT INTO message (received_at, source, kind, order_key, summary, digest, body, next_attempt) "
                "VALUES (?, ?, 'dicom', ?, ?, ?, ?, ?)",
                (now, message["source"], message["order_key"], message["summary"], digest, message["body"], now),
            )
            self._bump(db, "accepted")
            for system, code, display, place in message.get("unmapped") or []:
                self._note_unmapped(db, system, code, display, place, now)
        return True

    def mark(self, name: str) -> str | None:
        rows = self._read("SELECT value FROM pull_mark WHERE name = ?", (name,))
        return str(rows[0][0]) if rows else None

    def set_mark(self, name: str, value: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO pull_mark (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = ?",
                (name, value, value),
            )

    # ------------------------------------------------------------------------------------------------ shared file
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction on the outbox file for state other modules keep in it (the DICOM quarantine and the
        PACS pull's watermark, adapters/dicom/quarantine.py), so it commits atomically with the outbox's own."""
        with self._tx() as db:
            yield db

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return self._read(sql, params)
