"""The outbox file's schema version (PRAGMA user_version): a file of the first releases (no version) is upgraded on
open and everything it queued is still delivered; an upgrade is all or nothing; a newer release's file is refused
and left as it was; a database that is not an outbox is not taken for one."""

from __future__ import annotations

import hashlib
import random
import sqlite3
import threading
from pathlib import Path

import httpx
import orjson
import pytest

from adapters.config import OutboxSection, RegistrySection
from adapters.push import schema
from adapters.push.client import RegistryClient
from adapters.push.delivery import Deliverer
from adapters.push.outbox import Outbox, OutboxError

# The layout the first releases wrote, as they wrote it (executescript, no version): kept here verbatim so the test
# does not depend on the code it checks.
RELEASE_0_DDL = """
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

NOW = 3_000_000.0


def body(n: int) -> bytes:
    entry = {
        "fullUrl": f"urn:uuid:r-{n}",
        "resource": {"resourceType": "DiagnosticReport", "identifier": [{"system": "s", "value": f"R{n}"}]},
        "request": {"method": "PUT", "url": f"DiagnosticReport?identifier=s|R{n}"},
    }
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [entry]})


def release_0_file(path: Path) -> None:
    """An outbox as the first releases left it: queued messages (one backing off, two versions of one report), two
    dead letters, duplicates' digests, counters, a staged DICOM instance, a pull mark."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(RELEASE_0_DDL)
    rows = [
        (1, "report-1", 0, NOW - 100, None),
        (2, "report-2", 3, NOW + 40, "HTTP 503: registry busy"),
        (4, "report-1", 0, NOW - 90, None),  # report-1 corrected twice: 3 (dead-lettered, below), then 4
    ]
    for id_, key, attempts, due, error in rows:
        db.execute(
            "INSERT INTO message (id, received_at, source, kind, order_key, summary, digest, body, attempts, "
            "next_attempt, last_error) VALUES (?, ?, 'mllp', 'hl7', ?, ?, ?, ?, ?, ?, ?)",
            (id_, NOW - 200 + id_, key, f"m{id_}", f"d{id_}", body(id_), attempts, due, error),
        )
    for id_, key in ((3, "report-1"), (5, "report-5")):
        db.execute(
            "INSERT INTO dead_letter (id, received_at, failed_at, source, kind, order_key, summary, digest, body, "
            "attempts, status, outcome) VALUES (?, ?, ?, 'mllp', 'hl7', ?, ?, ?, ?, 1, 400, 'Observation.status')",
            (id_, NOW - 200 + id_, NOW - 50, key, f"m{id_}", f"d{id_}", body(id_)),
        )
    db.executemany("INSERT INTO seen (digest, at) VALUES (?, ?)", [(f"d{i}", NOW - 100) for i in (1, 2, 4)])
    db.executemany("INSERT INTO counter (name, value) VALUES (?, ?)", [("accepted", 5), ("dead", 2)])
    db.execute("INSERT INTO dicom_instance VALUES ('1.2.3.1', '1.2.3', ?, x'00', 0)", (NOW - 30,))
    db.execute("INSERT INTO pull_mark VALUES ('pacs', '20251103')")
    db.commit()
    db.close()


def user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_of_the_first_releases_is_upgraded_on_open_and_every_message_is_still_delivered(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    release_0_file(path)
    assert user_version(path) == 0
    clock = [NOW]
    box = Outbox(path, clock=lambda: clock[0])
    assert box.upgraded_from == 0 and user_version(path) == schema.LATEST == 2
    st = box.status()
    assert (st.pending, st.dead, st.accepted, st.retrying) == (3, 2, 5, 1)
    assert box.stable_studies(10) == ["1.2.3"] and box.mark("pacs") == "20251103"
    assert box.enqueue(source="mllp", kind="hl7", order_key="x", summary="again", digest="d1", body=b"{}") is False

    sent: list[str] = []

    def registry(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 300})
        sent.extend(e["resource"]["identifier"][0]["value"] for e in orjson.loads(request.content)["entry"])
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "transaction-response", "entry": []})

    client = RegistryClient(
        RegistrySection(url="http://registry.test", client_id="c", client_secret="s"),
        httpx.Client(transport=httpx.MockTransport(registry)),
    )
    settings = OutboxSection(path=path, concurrency=2)
    deliverer = Deliverer(box, client, settings, clock=lambda: clock[0], rng=random.Random(1))
    assert box.retry_dead() == 2  # the operator fixed the cause of the dead letters
    deliverer.run(threading.Event(), until_empty=True)
    clock[0] += 3600  # past the old backoff
    deliverer.run(threading.Event(), until_empty=True)
    assert sorted(sent) == ["R1", "R2", "R3", "R4", "R5"]
    assert sent.index("R1") < sent.index("R3") < sent.index("R4")  # report-1's versions still in queue order
    assert box.pending_count() == 0 and box.dead_letters() == [] and box.status().delivered == 5
    box.close()
    assert Outbox(path).upgraded_from == schema.LATEST  # opened again: nothing left to do


def test_a_new_file_is_created_at_the_latest_version(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "new.sqlite")
    assert box.upgraded_from == 0 and user_version(tmp_path / "new.sqlite") == schema.LATEST
    box.close()


def test_a_file_from_a_newer_release_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    Outbox(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {schema.LATEST + 1}")
    db.execute("CREATE TABLE from_the_future (x)")
    db.commit()
    db.close()
    before = digest(path)
    with pytest.raises(OutboxError, match=r"schema version 3, written by a newer hr-adapter release.*Nothing was"):
        Outbox(path)
    assert digest(path) == before and user_version(path) == schema.LATEST + 1
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0


def test_an_upgrade_that_fails_half_way_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path)
    box.enqueue(source="t", kind="hl7", order_key="k", summary="kept", digest="d", body=b"{}")
    box.close()
    broken = (*schema.STEPS, ("ALTER TABLE message ADD COLUMN note TEXT", "ALTER TABLE no_such_table ADD x"))
    db = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(OutboxError, match=r"cannot upgrade the outbox .* to schema version 3 \(nothing was changed\)"):
        schema.upgrade(db, path, broken)
    columns = [r[1] for r in db.execute("PRAGMA table_info(message)")]
    assert "note" not in columns and schema.version(db) == schema.LATEST
    db.close()
    assert Outbox(path).status().pending == 1


def test_only_the_missing_steps_run_and_rows_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path)
    box.enqueue(source="t", kind="hl7", order_key="k", summary="kept", digest="d", body=b"{}")
    box.close()
    # the released steps would fail if they ran again on this file (the tables exist): only the new one may run
    steps = (
        *(("CREATE TABLE message (id)",) for _ in schema.STEPS),
        ("ALTER TABLE message ADD COLUMN note TEXT DEFAULT 'n'",),
    )
    db = sqlite3.connect(path, isolation_level=None)
    assert schema.upgrade(db, path, steps) == schema.LATEST
    assert schema.version(db) == schema.LATEST + 1
    assert db.execute("SELECT summary, note FROM message").fetchall() == [("kept", "n")]
    assert schema.upgrade(db, path, steps) == schema.LATEST + 1  # already there: nothing runs
    db.close()


def test_a_database_that_is_not_an_outbox_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE alembic_version (version_num TEXT)")
    db.commit()
    db.close()
    before = digest(path)
    with pytest.raises(OutboxError, match="not an hr-adapter outbox"):
        Outbox(path)
    assert digest(path) == before


def test_a_version_1_file_gains_the_dicom_tables_and_keeps_its_queue(tmp_path: Path) -> None:
    """Version 2 adds the DICOM quarantine and the pull's watermark beside a version-1 queue."""
    from adapters.dicom.quarantine import Quarantine

    path = tmp_path / "outbox.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    schema.upgrade(db, path, schema.STEPS[:1])
    db.execute(
        "INSERT INTO message (received_at, source, kind, order_key, summary, digest, body, next_attempt) "
        "VALUES (1, 'mllp', 'hl7', 'k', 'kept', 'd', x'7b7d', 1)"
    )
    db.close()
    assert user_version(path) == 1
    box = Outbox(path)
    assert box.upgraded_from == 1 and user_version(path) == 2
    assert box.pending_count() == 1 and Quarantine(box).count() == 0
    assert box.query("SELECT COUNT(*) FROM dicom_pull_seen") == [(0,)]
    box.close()
