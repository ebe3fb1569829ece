"""Migration 0004 on a database that already holds decisions, on SQLite and PostgreSQL: a decision gets its card's
status, decisions stay append-only, and the downgrade undoes it all."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from registry.store import migrate
from registry.store.db import make_engine
from tests.integration.conftest import Database

WHEN = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def test_existing_decisions_get_their_cards_status_and_stay_append_only(database: Database) -> None:
    engine = make_engine(database.url, pool_size=1)
    try:
        migrate.upgrade(database.url, engine, "0002")
        with engine.begin() as conn:
            for uuid, status in (("card-dup", "same-hospital-duplicate"), ("card-rec", "recognizable")):
                conn.execute(
                    text(
                        "INSERT INTO recognition_card (uuid, issued, source, patient_key, item_id, status) "
                        "VALUES (:u, :t, 'operation', 'pk', 'L001', :s)"
                    ),
                    {"u": uuid, "t": WHEN, "s": status},
                )
                conn.execute(
                    text(
                        "INSERT INTO decision (card_uuid, recorded, recorded_us, outcome, counts_as_refusal, source, "
                        "patient_key, item_id, kind, fee_fen) "
                        "VALUES (:u, :t, 0, 'recognized', false, 'operation', 'pk', 'L001', 'lab', 2000)"
                    ),
                    {"u": uuid, "t": WHEN},
                )
        migrate.upgrade(database.url, engine, "0004")
        with engine.connect() as conn:
            rows = {
                r.card_uuid: r.card_status for r in conn.execute(text("SELECT card_uuid, card_status FROM decision"))
            }
            withdrawn = conn.execute(text("SELECT result_withdrawn FROM decision")).scalars().all()
            generation = conn.execute(text("SELECT generation FROM config_generation")).scalar_one()
        assert rows == {"card-dup": "same-hospital-duplicate", "card-rec": "recognizable"}
        assert withdrawn == [False, False]
        assert generation == 0
        for statement in ("UPDATE decision SET outcome = 'declined'", "DELETE FROM decision"):
            with pytest.raises(DBAPIError), engine.begin() as conn:
                conn.execute(text(statement))
        command.downgrade(migrate.alembic_config(database.url, engine), "0002")
        with engine.connect() as conn:
            columns = conn.execute(text("SELECT * FROM decision")).keys()
        assert "card_status" not in columns and "result_withdrawn" not in columns
        with pytest.raises(DBAPIError), engine.begin() as conn:
            conn.execute(text("DELETE FROM decision"))
        migrate.upgrade(database.url, engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()
