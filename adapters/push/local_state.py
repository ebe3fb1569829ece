"""What else the adapter keeps in its outbox file besides the queue: the unmapped codes it has seen, DICOM instances
received by C-STORE and not yet sent as a study, what was last sent for each study (so a pull sends only what
changed), and the pull's watermarks."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from adapters.push.store import OutboxFile


class LocalState(OutboxFile):
    # ------------------------------------------------------------------------------------------------ unmapped codes
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
        PACS pull's watermark: adapters/dicom/quarantine.py, adapters/dicom/pull.py; their tables are in the schema,
        adapters/push/schema.py), so it commits atomically with the outbox's own."""
        with self._tx() as db:
            yield db

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return self._read(sql, params)
