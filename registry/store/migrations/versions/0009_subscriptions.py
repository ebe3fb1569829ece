"""subscriptions: FHIR R4 Subscriptions (rest-hook) and the queue of their notifications

Revision ID: 0009_subscriptions
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_subscriptions"
down_revision = "0008"
branch_labels = None
depends_on = None

_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "subscription",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("criteria_type", sa.String(length=40), nullable=False),
        sa.Column("criteria", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("client_id", sa.String(length=100), nullable=False),
        sa.Column("org_id", sa.String(length=64), nullable=True),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("payload", sa.String(length=100), nullable=True),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("end_us", sa.BigInteger(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_subscription_type_status", "subscription", ["criteria_type", "status"], unique=False)
    op.create_table(
        "subscription_delivery",
        sa.Column("pk", _PK, autoincrement=True, nullable=False),
        sa.Column("subscription_id", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=40), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("queued", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_us", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("delivered", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint(
            "subscription_id", "resource_type", "resource_id", "version", name="uq_subscription_delivery"
        ),
    )
    op.create_index("ix_subscription_delivery_due", "subscription_delivery", ["state", "due_us"], unique=False)
    op.create_index(
        "ix_subscription_delivery_sub", "subscription_delivery", ["subscription_id", "state", "pk"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_subscription_delivery_sub", table_name="subscription_delivery")
    op.drop_index("ix_subscription_delivery_due", table_name="subscription_delivery")
    op.drop_table("subscription_delivery")
    op.drop_index("ix_subscription_type_status", table_name="subscription")
    op.drop_table("subscription")
