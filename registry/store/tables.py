"""The registry's tables (docs/design.md §4), as SQLModel classes. Alembic migrations create them; tests check the two
agree.

- ``resource``: the current version of every resource — the JSON as accepted (``body``), on PostgreSQL also as JSONB
  (``doc``) for ad-hoc queries — with the master patient key (``patient_key``) of patient-scoped resources.
- ``resource_version``: every version ever written (FHIR history), append-only; a version's body is kept here once
  it is superseded (the current version's body is the one in ``resource``, so a create writes the body once).
- ``sp_token`` / ``sp_string`` / ``sp_date`` / ``sp_reference``: extracted search values, one row per value.
- ``resource_identifier``: business identifiers (report number within its system, StudyInstanceUID, MRN…), unique, so
  a repeated or racing push can never create a duplicate.
- ``audit_event``: who read, searched or wrote what, for which patient; append-only (triggers refuse UPDATE/DELETE).
- ``client``: principals that may obtain tokens; disabled, the instant before which their tokens are refused, and
  the public keys (JWKS) a client authenticates with instead of a secret (SMART Backend Services).
- ``client_assertion``: the ``jti`` of every client assertion accepted and not yet expired (RFC 7523 §3 item 7:
  an assertion is used once).
- ``result_index``, ``code_map``, ``unmapped_code``, ``qualification``, ``recognition_card``, ``order_check``,
  ``decision``, ``config_generation`` (``registry.store.recognition_tables``): recognition's.
- ``reminder_card`` / ``reminder_feedback`` (``registry.store.reminder_tables``): the ``patient-view`` cards issued
  and the feedback on them.
- ``subscription`` / ``subscription_delivery`` (``registry.store.subscription_tables``): FHIR R4 Subscriptions and the
  queue of their rest-hook notifications.
- ``notification_preference`` / ``notification`` (``registry.store.notification_tables``): each patient's choices of
  channel and the durable queue of messages to the notification gateway.
- ``share_restriction`` / ``sensitive_share`` (``registry.store.consent_tables``): the projection of the patients'
  sharing consent.
- ``imaging_study_open`` (``registry.store.imaging_tables``): the studies opened through the DICOMweb gateway, one row
  per principal, study and hour (one AuditEvent per study opened).
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
    Text,
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


def _res_pk() -> Column[int]:
    return Column(PK, primary_key=True)


# The search tables are keyed for the searches themselves — (type, param, value…, res_pk) — with a narrow index on
# res_pk for replacing a resource's rows; one wide index per table keeps ingest cheap. They and the result index are
# derived from the resource rows, written and replaced in the same transaction by the write path (resources are never
# deleted as rows: a deletion is a version), so they carry no foreign key to ``resource``: a key checked per index row
# doubled PostgreSQL's cost of writing them (migration 0012); ``hr-registry index check`` compares the result index
# with the resources it comes from.


class TokenIndexRow(SQLModel, table=True):
    __tablename__ = "sp_token"
    __table_args__ = (Index("ix_sp_token_res", "res_pk"),)

    type: str = Field(sa_column=Column(String(40), primary_key=True))
    param: str = Field(sa_column=Column(String(40), primary_key=True))
    code: str = Field(sa_column=Column(String(255), primary_key=True))
    system: str = Field(sa_column=Column(String(255), primary_key=True))
    res_pk: int = Field(sa_column=_res_pk())


class StringIndexRow(SQLModel, table=True):
    __tablename__ = "sp_string"
    __table_args__ = (Index("ix_sp_string_res", "res_pk"),)

    type: str = Field(sa_column=Column(String(40), primary_key=True))
    param: str = Field(sa_column=Column(String(40), primary_key=True))
    value: str = Field(sa_column=Column(String(255), primary_key=True))  # normalized
    res_pk: int = Field(sa_column=_res_pk())
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
    res_pk: int = Field(sa_column=_res_pk())


class ReferenceIndexRow(SQLModel, table=True):
    __tablename__ = "sp_reference"
    __table_args__ = (Index("ix_sp_reference_res", "res_pk"),)

    type: str = Field(sa_column=Column(String(40), primary_key=True))
    param: str = Field(sa_column=Column(String(40), primary_key=True))
    target_id: str = Field(sa_column=Column(String(64), primary_key=True))
    target_type: str = Field(sa_column=Column(String(40), primary_key=True))
    res_pk: int = Field(sa_column=_res_pk())


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
    purpose: str | None = Field(default=None, sa_column=Column(String(20), nullable=True))  # v3-ActReason, e.g. BTG
    purpose_reason: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))


class IdentifierNamespaceRow(SQLModel, table=True):
    """Identifier systems an Organization owns (docs/design.md §6 ownership): an exact system, or every system under a
    prefix written with a trailing ``*`` (``https://hosp-a.example.cn/fhir/sid/*``, ``urn:oid:2.16.156.1.9.*``)."""

    __tablename__ = "identifier_namespace"

    pattern: str = Field(sa_column=Column(String(255), primary_key=True))
    org_id: str = Field(sa_column=Column(String(64), nullable=False, index=True))
    created: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


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
    tokens_valid_after: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    """Unix seconds: a token issued (``iat``) or a page session signed in at or before it is refused — set by
    ``rotate-secret`` and ``disable``, and on creation (so a removed client's tokens never serve a new one)."""
    jwks: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    """The client's public JWK Set (RFC 7517, JSON) for ``private_key_jwt`` (SMART client-confidential-asymmetric);
    NULL: the client authenticates with its secret only."""


class ClientAssertionRow(SQLModel, table=True):
    """A client assertion's ``jti`` seen at the token endpoint, kept until the assertion expires, so that it cannot
    be replayed on any server process (SMART client-confidential-asymmetric, "Signature Verification")."""

    __tablename__ = "client_assertion"
    __table_args__ = (Index("ix_client_assertion_expires", "expires_us"),)

    client_id: str = Field(sa_column=Column(String(100), primary_key=True))
    jti: str = Field(sa_column=Column(String(255), primary_key=True))
    expires_us: int = Field(sa_column=Column(BigInteger, nullable=False))


class StateRow(SQLModel, table=True):
    """Small facts about this installation (e.g. that the demo region was loaded)."""

    __tablename__ = "registry_state"

    key: str = Field(sa_column=Column(String(100), primary_key=True))
    value: str = Field(sa_column=Column(String(2000), nullable=False))


# recognition, the patient-view cards, Subscriptions and their deliveries, patient notifications, sharing consent:
# on the same metadata
from registry.store import (  # noqa: E402
    consent_tables,
    imaging_tables,
    notification_tables,
    recognition_tables,
    reminder_tables,
    subscription_tables,
)

metadata = SQLModel.metadata
__all__ = [
    "consent_tables",
    "imaging_tables",
    "metadata",
    "notification_tables",
    "recognition_tables",
    "reminder_tables",
    "subscription_tables",
]
