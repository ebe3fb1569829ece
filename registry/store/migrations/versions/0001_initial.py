"""initial schema: resources, versions, search index, identifiers, audit, clients

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_event",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("recorded", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_us", sa.BigInteger(), nullable=False),
        sa.Column("request_id", sa.String(length=40), nullable=False),
        sa.Column("action", sa.String(length=1), nullable=False),
        sa.Column("interaction", sa.String(length=40), nullable=False),
        sa.Column("outcome", sa.String(length=2), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=100), nullable=True),
        sa.Column("principal_kind", sa.String(length=20), nullable=True),
        sa.Column("principal_name", sa.String(length=200), nullable=True),
        sa.Column("org_id", sa.String(length=64), nullable=True),
        sa.Column("resource_type", sa.String(length=40), nullable=True),
        sa.Column("resource_id", sa.String(length=64), nullable=True),
        sa.Column("patient_key", sa.String(length=64), nullable=True),
        sa.Column("query", sa.String(length=2000), nullable=True),
        sa.Column("detail", sa.String(length=2000), nullable=True),
        sa.PrimaryKeyConstraint("pk"),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_event_client_id"), ["client_id"], unique=False)
        batch_op.create_index("ix_audit_patient", ["patient_key", "recorded_us"], unique=False)
        batch_op.create_index("ix_audit_recorded", ["recorded_us"], unique=False)

    op.create_table(
        "client",
        sa.Column("client_id", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("secret_hash", sa.String(length=200), nullable=False),
        sa.Column("scopes", sa.String(length=2000), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=True),
        sa.Column("patient_key", sa.String(length=64), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("client_id"),
    )
    op.create_table(
        "registry_state",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("value", sa.String(length=2000), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "resource",
        sa.Column("pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_updated_us", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("patient_key", sa.String(length=64), nullable=True),
        sa.Column("org_id", sa.String(length=64), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("doc", sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"), nullable=True),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("type", "id", name="uq_resource_type_id"),
    )
    with op.batch_alter_table("resource", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_resource_org_id"), ["org_id"], unique=False)
        batch_op.create_index("ix_resource_patient", ["type", "patient_key", "pk"], unique=False)
        batch_op.create_index("ix_resource_updated", ["type", "last_updated"], unique=False)

    op.create_table(
        "resource_version",
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("last_updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("type", "id", "version"),
    )
    op.create_table(
        "resource_identifier",
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("system", sa.String(length=255), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("res_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(["res_pk"], ["resource.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("type", "system", "value"),
    )
    with op.batch_alter_table("resource_identifier", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_resource_identifier_res_pk"), ["res_pk"], unique=False)

    op.create_table(
        "sp_date",
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("param", sa.String(length=40), nullable=False),
        sa.Column("low", sa.BigInteger(), nullable=False),
        sa.Column("high", sa.BigInteger(), nullable=False),
        sa.Column("res_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(["res_pk"], ["resource.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("type", "param", "low", "high", "res_pk"),
    )
    with op.batch_alter_table("sp_date", schema=None) as batch_op:
        batch_op.create_index("ix_sp_date_high", ["type", "param", "high"], unique=False)
        batch_op.create_index("ix_sp_date_res", ["res_pk"], unique=False)

    op.create_table(
        "sp_reference",
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("param", sa.String(length=40), nullable=False),
        sa.Column("target_id", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=40), nullable=False),
        sa.Column("res_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(["res_pk"], ["resource.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("type", "param", "target_id", "target_type", "res_pk"),
    )
    with op.batch_alter_table("sp_reference", schema=None) as batch_op:
        batch_op.create_index("ix_sp_reference_res", ["res_pk"], unique=False)

    op.create_table(
        "sp_string",
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("param", sa.String(length=40), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("res_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("exact", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["res_pk"], ["resource.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("type", "param", "value", "res_pk"),
    )
    with op.batch_alter_table("sp_string", schema=None) as batch_op:
        batch_op.create_index("ix_sp_string_res", ["res_pk"], unique=False)

    op.create_table(
        "sp_token",
        sa.Column("type", sa.String(length=40), nullable=False),
        sa.Column("param", sa.String(length=40), nullable=False),
        sa.Column("code", sa.String(length=255), nullable=False),
        sa.Column("system", sa.String(length=255), nullable=False),
        sa.Column("res_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(["res_pk"], ["resource.pk"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("type", "param", "code", "system", "res_pk"),
    )
    with op.batch_alter_table("sp_token", schema=None) as batch_op:
        batch_op.create_index("ix_sp_token_res", ["res_pk"], unique=False)

    _append_only_audit()


def downgrade() -> None:
    _drop_append_only_audit()
    with op.batch_alter_table("sp_token", schema=None) as batch_op:
        batch_op.drop_index("ix_sp_token_res")

    op.drop_table("sp_token")
    with op.batch_alter_table("sp_string", schema=None) as batch_op:
        batch_op.drop_index("ix_sp_string_res")

    op.drop_table("sp_string")
    with op.batch_alter_table("sp_reference", schema=None) as batch_op:
        batch_op.drop_index("ix_sp_reference_res")

    op.drop_table("sp_reference")
    with op.batch_alter_table("sp_date", schema=None) as batch_op:
        batch_op.drop_index("ix_sp_date_res")
        batch_op.drop_index("ix_sp_date_high")

    op.drop_table("sp_date")
    with op.batch_alter_table("resource_identifier", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resource_identifier_res_pk"))

    op.drop_table("resource_identifier")
    op.drop_table("resource_version")
    with op.batch_alter_table("resource", schema=None) as batch_op:
        batch_op.drop_index("ix_resource_updated")
        batch_op.drop_index("ix_resource_patient")
        batch_op.drop_index(batch_op.f("ix_resource_org_id"))

    op.drop_table("resource")
    op.drop_table("registry_state")
    op.drop_table("client")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_recorded")
        batch_op.drop_index("ix_audit_patient")
        batch_op.drop_index(batch_op.f("ix_audit_event_client_id"))

    op.drop_table("audit_event")


def _append_only_audit() -> None:
    """Audit events are append-only (docs/design.md §4): the database itself refuses UPDATE and DELETE."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'audit_event is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER audit_event_no_change BEFORE UPDATE OR DELETE ON audit_event "
            "FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_event_no_{verb.lower()} BEFORE {verb} ON audit_event "
                "BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END"
            )


def _drop_append_only_audit() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_change ON audit_event")
        op.execute("DROP FUNCTION IF EXISTS audit_event_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_delete")
