"""client revocation: the instant before which a client's tokens and page sessions are refused

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Unix seconds, compared with a token's ``iat`` (RFC 7519 §4.1.6); NULL for clients from before this revision.
    with op.batch_alter_table("client", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tokens_valid_after", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("client", schema=None) as batch_op:
        batch_op.drop_column("tokens_valid_after")
