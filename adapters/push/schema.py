"""The outbox file's layout and how an older file is brought up to it, so that a new adapter release never loses what
an old one queued (docs/design.md §7: the adapter's outbox is what keeps reports while the registry is away).

The version is SQLite's ``PRAGMA user_version`` (SQLite "PRAGMA user_version": an integer in the database header that
SQLite itself never uses). Version 0 is a file written before versions existed — or a new, empty file; ``STEPS[n]``
takes a file from version n to n + 1. Opening a file runs every step it lacks and stamps the new version in one SQLite
transaction (DDL is transactional in SQLite, and so is the header's user_version), so an upgrade that fails half way
leaves the file exactly as it was. A file from a newer release is refused before anything is written: an older
release cannot know what the newer one's rows mean.

A release that changes the layout appends a step (statements only, no ``executescript``, which would commit half way)
and never edits an existing one: a file stamped n has run steps 0 … n - 1 exactly as they were released.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from adapters.errors import AdapterError


class OutboxError(AdapterError):
    """The outbox file cannot be opened or written (disk full, permissions, corruption, a newer release's file)."""


# Version 1: the layout of the first releases (which wrote no version), stamped. ``IF NOT EXISTS`` makes the one step
# both create a new file and adopt an unversioned file of that layout as it is.
V1 = (
    """CREATE TABLE IF NOT EXISTS message (
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
    )""",
    "CREATE INDEX IF NOT EXISTS ix_message_key ON message (order_key, id)",
    """CREATE TABLE IF NOT EXISTS dead_letter (
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
    )""",
    "CREATE TABLE IF NOT EXISTS seen (digest TEXT PRIMARY KEY, at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS unmapped (
        system TEXT NOT NULL,
        code TEXT NOT NULL,
        display TEXT NOT NULL,
        place TEXT NOT NULL,
        count INTEGER NOT NULL,
        first_seen REAL NOT NULL,
        last_seen REAL NOT NULL,
        PRIMARY KEY (system, code)
    )""",
    """CREATE TABLE IF NOT EXISTS dicom_instance (
        sop_uid TEXT PRIMARY KEY,
        study_uid TEXT NOT NULL,
        received_at REAL NOT NULL,
        header BLOB NOT NULL,
        sent INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS ix_dicom_instance_study ON dicom_instance (study_uid)",
    "CREATE TABLE IF NOT EXISTS study_sent (study_uid TEXT PRIMARY KEY, digest TEXT NOT NULL, at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS pull_mark (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)

# Version 2: what the DICOM intake keeps beside the queue — studies it could not map, held with their reason until
# an operator replays them (adapters/dicom/quarantine.py), and the PACS pull's watermark of studies already seen
# (adapters/dicom/pull.py). ``IF NOT EXISTS`` adopts the tables of a pre-release that created them itself.
V2 = (
    """CREATE TABLE IF NOT EXISTS dicom_quarantine (
        study_uid TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        reason TEXT NOT NULL,
        first_at REAL NOT NULL,
        last_at REAL NOT NULL,
        attempts INTEGER NOT NULL,
        headers BLOB NOT NULL
    )""",
    "CREATE TABLE IF NOT EXISTS dicom_pull_seen (study_uid TEXT PRIMARY KEY, digest TEXT NOT NULL, at REAL NOT NULL)",
)

STEPS: tuple[tuple[str, ...], ...] = (V1, V2)
"""``STEPS[n]`` upgrades a file of version n to n + 1."""

LATEST = len(STEPS)


def version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def check_readable(db: sqlite3.Connection, path: Path, steps: Sequence[Sequence[str]] = STEPS) -> int:
    """The file's version, or OutboxError when this release cannot read it (reads only; writes nothing)."""
    found = version(db)
    if found > len(steps):
        raise OutboxError(
            f"the outbox {path} has schema version {found}, written by a newer hr-adapter release; this release "
            f"reads versions up to {len(steps)}. Nothing was changed: run the newer release on this file (its queued "
            "messages are still there), or give this one another outbox path"
        )
    if found == 0:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        tables.discard("sqlite_sequence")
        if tables and "message" not in tables:
            raise OutboxError(
                f"{path} is an SQLite database but not an hr-adapter outbox (it has the tables "
                f"{', '.join(sorted(tables))} and no message table); nothing was changed: check outbox.path"
            )
    return found


def upgrade(db: sqlite3.Connection, path: Path, steps: Sequence[Sequence[str]] = STEPS) -> int:
    """Bring the file to the latest version in one transaction; returns the version it had. ``db`` is in autocommit
    mode (``isolation_level=None``); another process opening the same file waits for the write lock, then finds the
    file upgraded."""
    if check_readable(db, path, steps) == len(steps):
        return len(steps)
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            found = check_readable(db, path, steps)  # again under the write lock: another process may have run it
            for step in steps[found:]:
                for statement in step:
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {len(steps):d}")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        raise OutboxError(
            f"cannot upgrade the outbox {path} to schema version {len(steps)} (nothing was changed): {exc}"
        ) from None
    return found
