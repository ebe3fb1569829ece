"""smart: clients' public keys (private_key_jwt) and the assertions seen; the patient-view cards and their feedback

Revision ID: 0008
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0005"
branch_labels = None
depends_on = None

_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # plain ADD COLUMN: the client's JWK Set (RFC 7517) for SMART client-confidential-asymmetric
    op.add_column("client", sa.Column("jwks", sa.Text(), nullable=True))
    op.create_table(
        "client_assertion",
        sa.Column("client_id", sa.String(length=100), nullable=False),
        sa.Column("jti", sa.String(length=255), nullable=False),
        sa.Column("expires_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "jti"),
    )
    op.create_index("ix_client_assertion_expires", "client_assertion", ["expires_us"], unique=False)
    op.create_table(
        "reminder_card",
        sa.Column("uuid", sa.String(length=40), nullable=False),
        sa.Column("issued", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.String(length=100), nullable=True),
        sa.Column("ordering_org", sa.String(length=64), nullable=True),
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("results", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("uuid"),
    )
    op.create_table(
        "reminder_feedback",
        sa.Column("pk", _PK, autoincrement=True, nullable=False),
        sa.Column("card_uuid", sa.String(length=40), nullable=False),
        sa.Column("recorded", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("reason_system", sa.String(length=255), nullable=True),
        sa.Column("reason_code", sa.String(length=64), nullable=True),
        sa.Column("comment", sa.String(length=1000), nullable=True),
        sa.Column("client_id", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("card_uuid"),
    )


def downgrade() -> None:
    op.drop_table("reminder_feedback")
    op.drop_table("reminder_card")
    op.drop_index("ix_client_assertion_expires", table_name="client_assertion")
    op.drop_table("client_assertion")
    with op.batch_alter_table("client", schema=None) as batch_op:
        batch_op.drop_column("jwks")
