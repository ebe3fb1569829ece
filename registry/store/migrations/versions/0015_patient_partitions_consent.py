"""patient partitions, consent and notification preferences: share_restriction, sensitive_share and
notification_preference hash-partitioned by patient_key on PostgreSQL (their primary keys hold it already; SQLite
unchanged)

Revision ID: 0015_patient_partitions_consent
Revises: 0014_patient_partitions
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0015_patient_partitions_consent"
down_revision = "0014_patient_partitions"
branch_labels = None
depends_on = None

PARTITIONS = 8
PRIMARY_KEYS = {  # as of this revision
    "share_restriction": "patient_key, org_id",
    "sensitive_share": "patient_key",
    "notification_preference": "patient_key",
}


def _rebuild(table: str, *, partitioned: bool) -> None:
    old = f"{table}_unpartitioned"
    op.execute(f"ALTER TABLE {table} RENAME TO {old}")
    op.execute(f"ALTER TABLE {old} RENAME CONSTRAINT {table}_pkey TO {old}_pkey")
    by = " PARTITION BY HASH (patient_key)" if partitioned else ""
    op.execute(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS){by}")
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY ({PRIMARY_KEYS[table]})")
    if partitioned:
        for n in range(PARTITIONS):
            op.execute(f"CREATE TABLE {table}_p{n} PARTITION OF {table} "
                       f"FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {n})")  # fmt: skip
    op.execute(f"INSERT INTO {table} SELECT * FROM {old}")  # noqa: S608 - table names of PRIMARY_KEYS, not input
    op.execute(f"DROP TABLE {old}")
    op.execute(f"ANALYZE {table}")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in PRIMARY_KEYS:
        _rebuild(table, partitioned=True)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in PRIMARY_KEYS:
        _rebuild(table, partitioned=False)
