"""notifications: patients' channel choices and the durable queue of messages to the notification gateway

Revision ID: 0010_notifications
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_notifications"
down_revision = "0009_subscriptions"
branch_labels = None
depends_on = None

_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "notification_preference",
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("recipient", sa.String(length=100), nullable=False),
        sa.Column("sms", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("push", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("patient_key"),
    )
    op.create_table(
        "notification",
        sa.Column("pk", _PK, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=40), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("recipient", sa.String(length=100), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("text", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("due_us", sa.BigInteger(), nullable=False),
        sa.Column("claim", sa.String(length=40), nullable=True),
        sa.Column("last_error", sa.String(length=255), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("key"),
        sa.UniqueConstraint("resource_type", "resource_id", "version", "channel", name="uq_notification_version"),
    )
    op.create_index("ix_notification_due", "notification", ["status", "due_us"], unique=False)
    op.create_index("ix_notification_patient", "notification", ["patient_key", "pk"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_notification_patient", table_name="notification")
    op.drop_index("ix_notification_due", table_name="notification")
    op.drop_table("notification")
    op.drop_table("notification_preference")
