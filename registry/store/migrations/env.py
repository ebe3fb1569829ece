"""Alembic environment: the URL comes from the caller (``hr-registry db upgrade`` passes the settings URL)."""

from __future__ import annotations

from alembic import context

from registry.store.db import make_engine
from registry.store.tables import metadata

MIGRATION_LOCK = 0x48525247  # "HRRG": the advisory lock key the migrations hold on PostgreSQL
config = context.config
url = config.get_main_option("sqlalchemy.url")
if not url:
    raise RuntimeError("no database URL given to the migrations")

if context.is_offline_mode():
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = config.attributes.get("engine") or make_engine(url, pool_size=1)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Registry nodes starting together each migrate on start (REGISTRY_AUTO_MIGRATE): one at a time, the
                # others waiting here and then finding nothing left to do (the lock ends with the transaction).
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            context.run_migrations()
