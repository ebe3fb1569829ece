"""recognition: result index, code maps, unmapped codes, qualifications, cards, checks, decisions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "code_map",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("system", sa.String(length=255), nullable=False),
        sa.Column("code", sa.String(length=255), nullable=False),
        sa.Column("item_id", sa.String(length=8), nullable=False),
        sa.Column("concept_map_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "system", "code"),
    )
    with op.batch_alter_table("code_map", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_code_map_concept_map_id"), ["concept_map_id"], unique=False)

    op.create_table(
        "decision",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("card_uuid", sa.String(length=40), nullable=False),
        sa.Column("recorded", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_us", sa.BigInteger(), nullable=False),
        sa.Column("outcome_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("reason_code", sa.String(length=4), nullable=True),
        sa.Column("counts_as_refusal", sa.Boolean(), nullable=False),
        sa.Column("comment", sa.String(length=1000), nullable=True),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.String(length=100), nullable=True),
        sa.Column("ordering_org", sa.String(length=64), nullable=True),
        sa.Column("issuer_org", sa.String(length=64), nullable=True),
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("item_id", sa.String(length=8), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("fee_fen", sa.BigInteger(), nullable=False),
        sa.Column("result_ref", sa.String(length=140), nullable=True),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("card_uuid"),
    )
    with op.batch_alter_table("decision", schema=None) as batch_op:
        batch_op.create_index("ix_decision_time", ["recorded_us"], unique=False)

    op.create_table(
        "order_check",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("checked", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checked_us", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("hook_instance", sa.String(length=64), nullable=True),
        sa.Column("order_key", sa.String(length=300), nullable=False),
        sa.Column("client_id", sa.String(length=100), nullable=True),
        sa.Column("ordering_org", sa.String(length=64), nullable=True),
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("item_id", sa.String(length=8), nullable=True),
        sa.Column("kind", sa.String(length=10), nullable=True),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("issuer_org", sa.String(length=64), nullable=True),
        sa.Column("card_uuid", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("pk"),
    )
    with op.batch_alter_table("order_check", schema=None) as batch_op:
        batch_op.create_index("ix_order_check_time", ["checked_us"], unique=False)

    op.create_table(
        "qualification",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("item_id", sa.String(length=8), nullable=True),
        sa.Column("group", sa.String(length=40), nullable=True),
        sa.Column("scope", sa.String(length=40), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=False),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("qualification", schema=None) as batch_op:
        batch_op.create_index("ix_qualification_org", ["org_id"], unique=False)

    op.create_table(
        "recognition_card",
        sa.Column("uuid", sa.String(length=40), nullable=False),
        sa.Column("issued", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.String(length=100), nullable=True),
        sa.Column("ordering_org", sa.String(length=64), nullable=True),
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("order_ref", sa.String(length=200), nullable=True),
        sa.Column("item_id", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("result_ref", sa.String(length=140), nullable=True),
        sa.Column("issuer_org", sa.String(length=64), nullable=True),
        sa.Column("suggestion_uuid", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("uuid"),
    )
    op.create_table(
        "unmapped_code",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("system", sa.String(length=255), nullable=False),
        sa.Column("code", sa.String(length=255), nullable=False),
        sa.Column("display", sa.String(length=255), nullable=True),
        sa.Column("resource_type", sa.String(length=40), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "system", "code"),
    )
    op.create_table(
        "result_index",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("item_id", sa.String(length=8), nullable=False),
        sa.Column("effective_us", sa.BigInteger(), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("hr_mark", sa.String(length=20), nullable=True),
        sa.Column("res_type", sa.String(length=40), nullable=False),
        sa.Column("res_id", sa.String(length=64), nullable=False),
        sa.Column("res_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("report_id", sa.String(length=64), nullable=True),
        sa.Column("value_text", sa.String(length=500), nullable=True),
        sa.Column("interpretation", sa.String(length=10), nullable=True),
        sa.ForeignKeyConstraint(["res_pk"], ["resource.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("pk"),
    )
    with op.batch_alter_table("result_index", schema=None) as batch_op:
        batch_op.create_index("ix_result_lookup", ["patient_key", "item_id", "effective_us"], unique=False)
        batch_op.create_index("ix_result_res", ["res_pk"], unique=False)
    _append_only("decision")


def downgrade() -> None:
    _drop_append_only("decision")
    with op.batch_alter_table("result_index", schema=None) as batch_op:
        batch_op.drop_index("ix_result_res")
        batch_op.drop_index("ix_result_lookup")

    op.drop_table("result_index")
    op.drop_table("unmapped_code")
    op.drop_table("recognition_card")
    with op.batch_alter_table("qualification", schema=None) as batch_op:
        batch_op.drop_index("ix_qualification_org")

    op.drop_table("qualification")
    with op.batch_alter_table("order_check", schema=None) as batch_op:
        batch_op.drop_index("ix_order_check_time")

    op.drop_table("order_check")
    with op.batch_alter_table("decision", schema=None) as batch_op:
        batch_op.drop_index("ix_decision_time")

    op.drop_table("decision")
    with op.batch_alter_table("code_map", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_code_map_concept_map_id"))

    op.drop_table("code_map")


def _append_only(table: str) -> None:
    """Decisions are append-only (docs/design.md §4): the database refuses UPDATE and DELETE."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{table} is append-only'; END $$"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {table}_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )


def _drop_append_only(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_change ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {table}_append_only()")
    else:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
