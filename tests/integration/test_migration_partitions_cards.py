"""Migration 0016 on a database that already holds cards, decisions, reminders and their feedback, on SQLite and
PostgreSQL: the rows are kept (on PostgreSQL moved into the eight partitions of each table), the feedback gets its
card's patient, one decision per card still holds, decisions stay append-only — and the downgrade undoes it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from registry.store import migrate, partitions
from registry.store.db import make_engine
from tests.integration.conftest import Database

WHEN = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
TABLES = ("recognition_card", "reminder_card", "decision", "reminder_feedback")
_DECISION = (
    "INSERT INTO decision (card_uuid, recorded, recorded_us, outcome, counts_as_refusal, source, patient_key, "
    "item_id, kind, fee_fen) VALUES (:u, :t, 0, 'recognized', false, 'operation', :k, 'L001', 'lab', 2000)"
)


def _seed(engine: Engine) -> None:
    with engine.begin() as conn:
        for n in range(20):
            card, key = f"card-{n}", f"key-{n}"
            row = {"u": card, "t": WHEN, "k": key}
            conn.execute(text("INSERT INTO recognition_card (uuid, issued, source, patient_key, item_id, status) "
                              "VALUES (:u, :t, 'operation', :k, 'L001', 'recognizable')"), row)  # fmt: skip
            conn.execute(text(_DECISION), row)
            conn.execute(text("INSERT INTO reminder_card (uuid, issued, source, patient_key, results) "
                              "VALUES (:u, :t, 'patient-view', :k, 2)"), {**row, "u": f"rem-{n}"})  # fmt: skip
            conn.execute(text("INSERT INTO reminder_feedback (card_uuid, recorded, outcome) "
                              "VALUES (:u, :t, 'accepted')"), {"u": f"rem-{n}", "t": WHEN})  # fmt: skip


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


def _one_decision_per_card_and_append_only(engine: Engine) -> None:
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text(_DECISION), {"u": "card-3", "t": WHEN, "k": "key-3"})
    for statement in ("UPDATE decision SET outcome = 'declined'", "DELETE FROM decision"):
        with pytest.raises(DBAPIError), engine.begin() as conn:
            conn.execute(text(statement))


def test_cards_and_decisions_are_partitioned_with_their_rows_and_guarantees(database: Database) -> None:
    engine = make_engine(database.url, pool_size=1)
    postgres = engine.dialect.name == "postgresql"
    try:
        migrate.upgrade(database.url, engine, "0015_patient_partitions_consent")
        _seed(engine)
        migrate.upgrade(database.url, engine)
        assert _counts(engine) == dict.fromkeys(TABLES, 20)
        with engine.connect() as conn:
            keys = dict(conn.execute(text("SELECT card_uuid, patient_key FROM reminder_feedback")).all())
            if postgres:
                kinds = dict(conn.execute(text("SELECT relname, relkind FROM pg_class WHERE relname IN "
                                               "('recognition_card', 'reminder_card', 'decision', "
                                               "'reminder_feedback')")).all())  # fmt: skip
                spread = conn.execute(text("SELECT count(DISTINCT tableoid) FROM decision")).scalar_one()
                assert kinds == dict.fromkeys(TABLES, "p") and spread > 1
                assert set(TABLES) <= set(partitions.PARTITIONED)
        assert keys == {f"rem-{n}": f"key-{n}" for n in range(20)}
        _one_decision_per_card_and_append_only(engine)

        command.downgrade(migrate.alembic_config(database.url, engine), "0015_patient_partitions_consent")
        assert _counts(engine) == dict.fromkeys(TABLES, 20)
        with engine.connect() as conn:
            columns = conn.execute(text("SELECT * FROM reminder_feedback")).keys()
        assert "patient_key" not in columns
        _one_decision_per_card_and_append_only(engine)
        migrate.upgrade(database.url, engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert _counts(engine) == dict.fromkeys(TABLES, 20)
    finally:
        engine.dispose()
