"""derived rows without foreign keys: the search-parameter tables and the result index no longer reference
``resource`` with a foreign key (written with their resource in one transaction, never orphaned by a row delete: a
deletion is a version); the key's check per index row doubled PostgreSQL's cost of writing them

Revision ID: 0012_derived_rows
Revises: 0011_consent
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_derived_rows"
down_revision = "0011_consent"
branch_labels = None
depends_on = None

TABLES = ("sp_token", "sp_string", "sp_date", "sp_reference", "result_index")
# SQLite's keys have no names: batch mode names them by this convention to drop them (Alembic's batch docs)
CONVENTION = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def _keys(table: str) -> list[str | None]:
    inspector = sa.inspect(op.get_bind())
    return [fk.get("name") for fk in inspector.get_foreign_keys(table) if fk.get("referred_table") == "resource"]


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in TABLES:
        keys = _keys(table)
        if not keys:
            continue  # already done (a second run)
        if sqlite:
            with op.batch_alter_table(table, naming_convention=CONVENTION, recreate="always") as batch:
                batch.drop_constraint(f"fk_{table}_res_pk_resource", type_="foreignkey")
        else:
            for name in keys:
                op.drop_constraint(str(name), table, type_="foreignkey")


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in TABLES:
        if _keys(table):
            continue
        if sqlite:
            with op.batch_alter_table(table, naming_convention=CONVENTION, recreate="always") as batch:
                batch.create_foreign_key(f"fk_{table}_res_pk_resource", "resource", ["res_pk"], ["pk"],
                                         ondelete="CASCADE")  # fmt: skip
        else:
            op.create_foreign_key(f"{table}_res_pk_fkey", table, "resource", ["res_pk"], ["pk"], ondelete="CASCADE")
