"""counting: the latest instant of an imprecise effective, a decision's card status and withdrawn flag, and the
configuration generation

- ``result_index.effective_high_us``: the latest instant an imprecise effective can mean (docs/design.md §5 rule 5).
  Existing rows keep NULL, read as ``effective_us`` (the old behaviour) until ``hr-registry index rebuild``.
- ``decision.card_status``: the status of the card decided on, so a same-hospital duplicate is counted on its own;
  existing decisions get it from their card (the append-only triggers are lifted for that one statement).
- ``decision.result_withdrawn``: the card's result was no longer recognizable when the decision arrived; false for
  existing decisions (not known after the fact).
- ``config_generation``: one row, ``recognition``, bumped in the transaction of every code-map, Organization or
  qualification change; caches of that configuration are valid only for the generation they were read at.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("result_index", sa.Column("effective_high_us", sa.BigInteger(), nullable=True))
    # Plain ALTER TABLE … ADD COLUMN on both databases (no batch copy): the decision table keeps its triggers.
    op.add_column("decision", sa.Column("card_status", sa.String(length=40), nullable=True))
    op.add_column("decision", sa.Column("result_withdrawn", sa.Boolean(), nullable=False, server_default=sa.false()))
    with _append_only_lifted("decision"):
        op.execute(
            "UPDATE decision SET card_status = "
            "(SELECT recognition_card.status FROM recognition_card WHERE recognition_card.uuid = decision.card_uuid)"
        )
    op.create_table(
        "config_generation",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.execute("INSERT INTO config_generation (name, generation) VALUES ('recognition', 0)")


def downgrade() -> None:
    op.drop_table("config_generation")
    with _append_only_lifted("decision"), op.batch_alter_table("decision", schema=None) as batch_op:
        batch_op.drop_column("result_withdrawn")
        batch_op.drop_column("card_status")
    with op.batch_alter_table("result_index", schema=None) as batch_op:
        batch_op.drop_column("effective_high_us")


@contextmanager
def _append_only_lifted(table: str) -> Iterator[None]:
    """Lift the append-only triggers of 0002 (docs/design.md §4) for a schema change, and put them back after it."""
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_no_change")
    else:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    yield
    if postgresql:
        op.execute(f"ALTER TABLE {table} ENABLE TRIGGER {table}_no_change")
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
        )
