"""patient partitions: result_index and order_check hash-partitioned by patient_key on PostgreSQL
(registry.store.partitions; SQLite unchanged)

Revision ID: 0014_patient_partitions
Revises: 0013_imaging_gateway
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0014_patient_partitions"
down_revision = "0013_imaging_gateway"
branch_labels = None
depends_on = None

PARTITIONS = 8
PARTITIONED: dict[str, tuple[tuple[str, str], ...]] = {  # as of this revision (registry.store.partitions grows)
    "result_index": (("ix_result_lookup", "patient_key, item_id, effective_us"), ("ix_result_res", "res_pk")),
    "order_check": (("ix_order_check_time", "checked_us"),),
}


def partition_names(table: str) -> list[str]:
    return [f"{table}_p{n}" for n in range(PARTITIONS)]


def _set_aside(table: str) -> str:
    old = f"{table}_unpartitioned"
    op.execute(f"ALTER TABLE {table} RENAME TO {old}")
    op.execute(f"ALTER TABLE {old} RENAME CONSTRAINT {table}_pkey TO {old}_pkey")
    for name, _columns in PARTITIONED[table]:
        op.execute(f"ALTER INDEX {name} RENAME TO {name}_unpartitioned")
    return old


def _move_rows(table: str, old: str) -> None:
    op.execute(f"INSERT INTO {table} SELECT * FROM {old}")  # noqa: S608 - table names of PARTITIONED, not input
    op.execute(f"ALTER SEQUENCE {table}_pk_seq OWNED BY {table}.pk")  # the one sequence, kept (its next value too)
    op.execute(f"DROP TABLE {old}")
    for name, columns in PARTITIONED[table]:
        op.execute(f"CREATE INDEX {name} ON {table} ({columns})")
    op.execute(f"ANALYZE {table}")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in PARTITIONED:
        old = _set_aside(table)
        op.execute(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS) PARTITION BY HASH (patient_key)")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (pk, patient_key)")
        for n, name in enumerate(partition_names(table)):
            op.execute(
                f"CREATE TABLE {name} PARTITION OF {table} FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {n})"
            )
        _move_rows(table, old)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in PARTITIONED:
        old = _set_aside(table)
        op.execute(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS)")
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (pk)")
        _move_rows(table, old)
