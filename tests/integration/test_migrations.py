"""The Alembic migrations build exactly the schema the code declares, on SQLite and PostgreSQL, and run twice."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from registry.store import migrate, partitions
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
            context = MigrationContext.configure(conn, opts={"include_name": partitions.include_name})
            diff = compare_metadata(context, metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_patient_scoped_hot_tables_are_hash_partitioned_by_patient_on_postgresql(database: Database) -> None:
    """registry.store.partitions: a look-up by patient touches one partition of the eight (SQLite: plain tables)."""
    if not database.url.startswith("postgresql"):
        pytest.skip("SQLite has no declarative partitioning: its tables stay plain")
    engine = make_engine(database.url, pool_size=1)
    try:
        migrate.upgrade(database.url, engine)
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT relname, relkind FROM pg_class WHERE relname = ANY(%(names)s)",
                {"names": list(partitions.PARTITIONED)},
            )
            kinds = {str(name): str(kind) for name, kind in rows}
            plan = "\n".join(
                str(r[0])
                for r in conn.exec_driver_sql(
                    "EXPLAIN SELECT pk FROM result_index WHERE patient_key = 'k' AND item_id = 'L1'"
                )
            )
            touched = {n for n in partitions.partition_names("result_index") if f" {n} " in f"{plan} "}
            assert len(touched) == 1, plan
        assert kinds == dict.fromkeys(partitions.PARTITIONED, "p")
    finally:
        engine.dispose()
