"""patient partitions, cards and decisions: recognition_card, decision, reminder_card and reminder_feedback
hash-partitioned by patient_key on PostgreSQL. A unique key of a partitioned table must hold the partition key, so
"one decision per card" becomes UNIQUE (card_uuid, patient_key) on both dialects — the same guarantee, a card having
one patient, whose key the decision copies from it; reminder_feedback gains the patient_key of its card.

Revision ID: 0016_patient_partitions_cards
Revises: 0015_patient_partitions_consent
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_patient_partitions_cards"
down_revision = "0015_patient_partitions_consent"
branch_labels = None
depends_on = None

PARTITIONS = 8
# as of this revision: (primary key, unique key on (card_uuid, patient_key), its name, other indexes)
TABLES: dict[str, tuple[str, str | None, tuple[tuple[str, str], ...]]] = {
    "recognition_card": ("uuid, patient_key", None, ()),
    "reminder_card": ("uuid, patient_key", None, ()),
    "decision": ("pk, patient_key", "uq_decision_card", (("ix_decision_time", "recorded_us"),)),
    "reminder_feedback": ("pk, patient_key", "uq_reminder_feedback_card", ()),
}
UNIQUE = {table: name for table, (_key, name, _ix) in TABLES.items() if name}
OLD_UNIQUE = {"decision": "decision_card_uuid_key", "reminder_feedback": "reminder_feedback_card_uuid_key"}
# SQLite's unique keys have no names: batch mode names them by this convention to drop them (Alembic's batch docs)
CONVENTION = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
_BACKFILL = (
    "UPDATE reminder_feedback SET patient_key = "
    "(SELECT reminder_card.patient_key FROM reminder_card WHERE reminder_card.uuid = reminder_feedback.card_uuid)"
)


def _has_column(table: str, column: str) -> bool:
    return any(c["name"] == column for c in sa.inspect(op.get_bind()).get_columns(table))


def _append_only_decisions() -> None:
    """The decision table's triggers again (a rebuilt table has none): the database refuses UPDATE and DELETE of a
    decision (migration 0002; docs/design.md §4). The PostgreSQL function outlives the table."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS decision_no_change ON decision")
        op.execute(
            "CREATE TRIGGER decision_no_change BEFORE UPDATE OR DELETE ON decision "
            "FOR EACH ROW EXECUTE FUNCTION decision_append_only()"
        )
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(f"DROP TRIGGER IF EXISTS decision_no_{verb.lower()}")
        op.execute(
            f"CREATE TRIGGER decision_no_{verb.lower()} BEFORE {verb} ON decision "
            "BEGIN SELECT RAISE(ABORT, 'decision is append-only'); END"
        )


def _sqlite_upgrade() -> None:
    if not _has_column("reminder_feedback", "patient_key"):
        op.add_column("reminder_feedback", sa.Column("patient_key", sa.String(length=64), nullable=True))
        op.execute(_BACKFILL)
    for table, name in UNIQUE.items():
        with op.batch_alter_table(table, naming_convention=CONVENTION, recreate="always") as batch:
            if table == "reminder_feedback":
                batch.alter_column("patient_key", existing_type=sa.String(length=64), nullable=False)
            batch.drop_constraint(f"uq_{table}_card_uuid", type_="unique")
            batch.create_unique_constraint(name, ["card_uuid", "patient_key"])
    _append_only_decisions()


def _rebuild(table: str, *, partitioned: bool) -> None:
    """``table`` made again (partitioned by patient, or plain), its rows moved in this transaction."""
    primary, unique, indexes = TABLES[table]
    old = f"{table}_unpartitioned"
    op.execute(f"ALTER TABLE {table} RENAME TO {old}")
    op.execute(f"ALTER TABLE {old} RENAME CONSTRAINT {table}_pkey TO {old}_pkey")
    for name, _columns in indexes:
        op.execute(f"ALTER INDEX {name} RENAME TO {name}_unpartitioned")
    for dropped in (unique, OLD_UNIQUE.get(table)):
        if dropped:
            op.execute(f"ALTER TABLE {old} DROP CONSTRAINT IF EXISTS {dropped}")
    by = " PARTITION BY HASH (patient_key)" if partitioned else ""
    op.execute(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS){by}")
    key = primary if partitioned else primary.split(",")[0]  # the plain table's own key: uuid, or pk
    op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY ({key})")
    if unique:
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {unique} UNIQUE (card_uuid, patient_key)")
    if partitioned:
        for n in range(PARTITIONS):
            op.execute(f"CREATE TABLE {table}_p{n} PARTITION OF {table} "
                       f"FOR VALUES WITH (MODULUS {PARTITIONS}, REMAINDER {n})")  # fmt: skip
    op.execute(f"INSERT INTO {table} SELECT * FROM {old}")  # noqa: S608 - table names of TABLES, not input
    if primary.startswith("pk"):
        op.execute(f"ALTER SEQUENCE {table}_pk_seq OWNED BY {table}.pk")  # the one sequence, kept (its next value)
    op.execute(f"DROP TABLE {old}")
    for name, columns in indexes:
        op.execute(f"CREATE INDEX {name} ON {table} ({columns})")
    op.execute(f"ANALYZE {table}")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        _sqlite_upgrade()
        return
    if not _has_column("reminder_feedback", "patient_key"):
        op.add_column("reminder_feedback", sa.Column("patient_key", sa.String(length=64), nullable=True))
        op.execute(_BACKFILL)
        op.alter_column("reminder_feedback", "patient_key", nullable=False)
    for table in TABLES:
        _rebuild(table, partitioned=True)
    _append_only_decisions()


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for table, name in UNIQUE.items():
            with op.batch_alter_table(table, recreate="always") as batch:
                batch.drop_constraint(name, type_="unique")
                batch.create_unique_constraint(f"uq_{table}_card_uuid", ["card_uuid"])
        with op.batch_alter_table("reminder_feedback", recreate="always") as batch:
            batch.drop_column("patient_key")
        _append_only_decisions()
        return
    for table in TABLES:
        _rebuild(table, partitioned=False)
    for table, name in UNIQUE.items():
        op.drop_constraint(name, table, type_="unique")
        op.create_unique_constraint(OLD_UNIQUE[table], table, ["card_uuid"])
    op.drop_column("reminder_feedback", "patient_key")
    _append_only_decisions()
