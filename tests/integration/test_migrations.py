"""The Alembic migrations build exactly the schema the code declares, on SQLite and PostgreSQL, and run twice."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from registry.store import migrate, partitions
from registry.store.db import make_engine
from registry.store.tables import metadata
from tests.integration.conftest import PG_ADMIN_URL, Database


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
            # a card's decision, looked up with the card's patient (registry.store.recognition.decision_for)
            plan = "\n".join(str(r[0]) for r in conn.exec_driver_sql(
                "EXPLAIN SELECT pk FROM decision WHERE card_uuid = 'c' AND patient_key = 'k'"))  # fmt: skip
            touched = {n for n in partitions.partition_names("decision") if f" {n} " in f"{plan} "}
            assert len(touched) == 1, plan
        assert kinds == dict.fromkeys(partitions.PARTITIONED, "p")
    finally:
        engine.dispose()


def test_nodes_migrating_one_fresh_database_at_once_all_succeed(database: Database) -> None:
    """Registry nodes started together each migrate on start: one migrates, the others wait and find it done."""
    if not database.url.startswith("postgresql"):
        pytest.skip("SQLite: one file, one writer at a time already (BEGIN IMMEDIATE); nodes share PostgreSQL")
    name = f"hr_test_fresh_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    env = {**os.environ, "REGISTRY_DATABASE_URL": url}
    cli = [sys.executable, "-c", "from registry.cli import app; app()", "db", "upgrade"]
    try:
        nodes = [subprocess.Popen(cli, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # noqa: S603
                 for _ in range(3)]  # fmt: skip
        outputs = [node.communicate(timeout=120)[0].decode() for node in nodes]
        assert [node.returncode for node in nodes] == [0, 0, 0], outputs
        engine = make_engine(url, pool_size=1)
        assert migrate.current_revision(engine) == migrate.head_revision()
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
