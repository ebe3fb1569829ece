"""The Alembic migrations build exactly the schema the code declares, on SQLite and PostgreSQL, and run twice."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from registry.store import migrate
from registry.store.db import make_engine
from registry.store.tables import metadata
from tests.integration.conftest import Database


def test_migrations_match_the_models_and_are_idempotent(database: Database) -> None:
    engine = make_engine(database.url, pool_size=1)
    try:
        migrate.upgrade(database.url, engine)
        migrate.upgrade(database.url, engine)  # a second run is a no-op
        assert migrate.current_revision(engine) == migrate.head_revision()
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == []
    finally:
        engine.dispose()
