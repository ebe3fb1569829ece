"""imaging gateway: the studies opened through the DICOMweb gateway, one row per principal, study, purpose and hour
(one AuditEvent per study opened, across registry processes)

Revision ID: 0013_imaging_gateway
Revises: 0012_derived_rows
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_imaging_gateway"
down_revision = "0012_derived_rows"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "imaging_study_open",
        sa.Column("client_id", sa.String(length=100), nullable=False),
        sa.Column("study_id", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=10), nullable=False),
        sa.Column("hour", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "study_id", "purpose", "hour"),
    )
    op.create_index("ix_imaging_study_open_hour", "imaging_study_open", ["hour"])


def downgrade() -> None:
    op.drop_index("ix_imaging_study_open_hour", table_name="imaging_study_open")
    op.drop_table("imaging_study_open")
