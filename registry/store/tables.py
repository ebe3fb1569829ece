"""The registry's tables (DESIGN.md §4), as SQLModel classes. Alembic migrations create them; tests check the two agree.

- ``resource``: the current version of every resource — the JSON as accepted (``body``), on PostgreSQL also as JSONB
  (``doc``) for ad-hoc queries — with the master patient key (``patient_key``) of patient-scoped resources.
- ``resource_version``: every version ever written (FHIR history), append-only; a version's body is kept here once
  it is superseded (the current version's body is the one in ``resource``, so a create writes the body once).
- ``sp_token`` / ``sp_string`` / ``sp_date`` / ``sp_reference``: extracted search values, one row per value.
- ``resource_identifier``: business identifiers (report number within its system, StudyInstanceUID, MRN…), unique, so
  a repeated or racing push can never create a duplicate.
- ``audit_event``: who read, searched or wrote what, for which patient; append-only (triggers refuse UPDATE/DELETE).
- ``client``: principals that may obtain tokens.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import JSON
from sqlmodel import Field, SQLModel

PK = BigInteger().with_variant(Integer, "sqlite")
"""64-bit keys on PostgreSQL; SQLite's rowid alias must be exactly INTEGER to autoincrement."""


class ResourceRow(SQLModel, table=True):
    __tablename__ = "resource"
    __table_args__ = (
        UniqueConstraint("type", "id", name="uq_resource_type_id"),
        Index("ix_resource_patient", "type", "patient_key", "pk"),
        Index("ix_resource_updated", "type", "last_updated"),
    )

    pk: int | None = Field(default=None, sa_column=Column(PK, primary_key=True, autoincrement=True))
    type: str = Field(sa_column=Column(String(40), nullable=False))
    id: str = Field(sa_column=Column(String(64), nullable=False))
    version: int = Field(sa_column=Column(Integer, nullable=False))
    last_updated: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    last_updated_us: int = Field(sa_column=Column(BigInteger, nullable=False))
    deleted: bool = Field(default=False, nullable=False)
    patient_key: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    org_id: str | None = Field(default=None, sa_column=Column(String(64), nullable=True, index=True))
    content_hash: str = Field(sa_column=Column(String(64), nullable=False))
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    doc: dict[str, object] | None = Field(
        default=None, sa_column=Column(JSON().with_variant(JSONB(), "postgresql"), nullable=True)
    )


class ResourceVersionRow(SQLModel, table=True):
    __tablename__ = "resource_version"

    type: str = Field(sa_column=Column(String(40), primary_key=True))
    id: str = Field(sa_column=Column(String(64), primary_key=True))
    version: int = Field(sa_column=Column(Integer, primary_key=True))
    last_updated: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    method: str = Field(sa_column=Column(String(8), nullable=False))  # POST | PUT | DELETE
    deleted: bool = Field(default=False, nullable=False)
    body: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


def _res_fk() -> Column[int]:
    return Column(PK, ForeignKey("resource.pk", ondelete="CASCADE"), primary_key=True)


# The search tables are keyed for the searches themselves — (type, param, value…, res_pk) — with a narrow index on
# res_pk for replacing a resource's rows; one wide index per table keeps ingest cheap.


class TokenIndexRow(SQLModel, table=True):
    __tablename__ = "sp_token"
    __table_args__ = (Index("ix_sp_token_res", "res_pk"),)

    type: str = Field(sa_column=Column(String(40), primary_key=True))
    param: str = Field(sa_column=Column(String(40), primary_key=True))
    code: str = Field(sa_column=Column(String(255), primary_key=True))
    system: str = Field(sa_column=Column(String(255), primary_key=True))
    res_pk: int = Field(sa_column=_res_fk())


class StringIndexRow(SQLModel, table=True):
    __tablename__ = "sp_string"
    __table_args__ = (Index("ix_sp_string_res", "res_pk"),)

    type: str = Field(sa_column=Column(String(40), primary_key=True))
    param: str = Field(sa_column=Column(String(40), primary_key=True))
    value: str = Field(sa_column=Column(String(255), primary_key=True))  # normalized
    res_pk: int = Field(sa_column=_res_fk())
    exact: str = Field(sa_column=Column(String(255), nullable=False))


class DateIndexRow(SQLModel, table=True):
    __tablename__ = "sp_date"
    __table_args__ = (
        Index("ix_sp_date_high", "type", "param", "high"),
        Index("ix_sp_date_res", "res_pk"),
    )

    type: str = Field(sa_column=Column(String(40), primary_key=True))
    param: str = Field(sa_column=Column(String(40), primary_key=True))
    low: int = Field(sa_column=Column(BigInteger, primary_key=True))
    high: int = Field(sa_column=Column(BigInteger, primary_key=True))
    res_pk: int = Field(sa_column=_res_fk())


class ReferenceIndexRow(SQLModel, table=True):
    __tablename__ = "sp_reference"
    __table_args__ = (Index("ix_sp_reference_res", "res_pk"),)

    type: str = Field(sa_column=Column(String(40), primary_key=True))
    param: str = Field(sa_column=Column(String(40), primary_key=True))
    target_id: str = Field(sa_column=Column(String(64), primary_key=True))
    target_type: str = Field(sa_column=Column(String(40), primary_key=True))
    res_pk: int = Field(sa_column=_res_fk())


class IdentifierRow(SQLModel, table=True):
    """Business identity: at most one live resource of a type per (identifier system, value)."""

    __tablename__ = "resource_identifier"

    type: str = Field(sa_column=Column(String(40), primary_key=True))
    system: str = Field(sa_column=Column(String(255), primary_key=True))
    value: str = Field(sa_column=Column(String(255), primary_key=True))
    res_pk: int = Field(sa_column=Column(PK, ForeignKey("resource.pk", ondelete="CASCADE"), nullable=False, index=True))


class AuditEventRow(SQLModel, table=True):
    __tablename__ = "audit_event"
    __table_args__ = (
        Index("ix_audit_patient", "patient_key", "recorded_us"),
        Index("ix_audit_recorded", "recorded_us"),
    )

    pk: int | None = Field(default=None, sa_column=Column(PK, primary_key=True, autoincrement=True))
    recorded: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    recorded_us: int = Field(sa_column=Column(BigInteger, nullable=False))
    request_id: str = Field(sa_column=Column(String(40), nullable=False))
    action: str = Field(sa_column=Column(String(1), nullable=False))  # C R U D E
    interaction: str = Field(sa_column=Column(String(40), nullable=False))
    outcome: str = Field(sa_column=Column(String(2), nullable=False))  # 0 4 8 12
    status: int = Field(sa_column=Column(Integer, nullable=False))
    client_id: str | None = Field(default=None, sa_column=Column(String(100), nullable=True, index=True))
    principal_kind: str | None = Field(default=None, sa_column=Column(String(20), nullable=True))
    principal_name: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    org_id: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    resource_type: str | None = Field(default=None, sa_column=Column(String(40), nullable=True))
    resource_id: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    patient_key: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    query: str | None = Field(default=None, sa_column=Column(String(2000), nullable=True))
    detail: str | None = Field(default=None, sa_column=Column(String(2000), nullable=True))


class ClientRow(SQLModel, table=True):
    __tablename__ = "client"

    client_id: str = Field(sa_column=Column(String(100), primary_key=True))
    kind: str = Field(sa_column=Column(String(20), nullable=False))
    name: str = Field(sa_column=Column(String(200), nullable=False))
    secret_hash: str = Field(sa_column=Column(String(200), nullable=False))
    scopes: str = Field(sa_column=Column(String(2000), nullable=False))
    org_id: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    patient_key: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    created: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    disabled: bool = Field(default=False, nullable=False)


class StateRow(SQLModel, table=True):
    """Small facts about this installation (e.g. that the demo region was loaded)."""

    __tablename__ = "registry_state"

    key: str = Field(sa_column=Column(String(100), primary_key=True))
    value: str = Field(sa_column=Column(String(2000), nullable=False))


metadata = SQLModel.metadata
