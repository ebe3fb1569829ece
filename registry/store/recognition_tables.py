"""The recognition tables (docs/design.md §4, §5), on the registry's metadata (``registry.store.tables``): the result
index (the order check's hot path), hospitals' code maps and the local codes they miss, qualifications, the cards
issued, the order-check log, the clinicians' decisions, and the configuration generation."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    String,
    UniqueConstraint,
    false,
)
from sqlmodel import Field, SQLModel

PK = BigInteger().with_variant(Integer, "sqlite")


class ResultIndexRow(SQLModel, table=True):
    """The hot path: one row per (master patient, catalog item, result), kept in the transaction of the write."""

    __tablename__ = "result_index"
    __table_args__ = (
        Index("ix_result_lookup", "patient_key", "item_id", "effective_us"),
        Index("ix_result_res", "res_pk"),
    )

    pk: int | None = Field(default=None, sa_column=Column(PK, primary_key=True, autoincrement=True))
    patient_key: str = Field(sa_column=Column(String(64), nullable=False))
    item_id: str = Field(sa_column=Column(String(8), nullable=False))
    effective_us: int = Field(sa_column=Column(BigInteger, nullable=False))  # the earliest instant it can mean
    # The latest instant an imprecise effective can mean (``2026-12``: the month's last microsecond); NULL on rows
    # written before migration 0004 until ``hr-registry index rebuild``, read as ``effective_us``.
    effective_high_us: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    org_id: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    status: str = Field(sa_column=Column(String(20), nullable=False))
    hr_mark: str | None = Field(default=None, sa_column=Column(String(20), nullable=True))  # "HR", "京HR"…
    res_type: str = Field(sa_column=Column(String(40), nullable=False))
    res_id: str = Field(sa_column=Column(String(64), nullable=False))
    res_pk: int = Field(sa_column=Column(PK, nullable=False))  # derived rows: no foreign key (see the search tables)
    report_id: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))  # the DiagnosticReport
    value_text: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))
    interpretation: str | None = Field(default=None, sa_column=Column(String(10), nullable=True))


class CodeMapRow(SQLModel, table=True):
    """A hospital's local code → catalog item, derived from its ConceptMap resources."""

    __tablename__ = "code_map"

    org_id: str = Field(sa_column=Column(String(64), primary_key=True))
    system: str = Field(sa_column=Column(String(255), primary_key=True))
    code: str = Field(sa_column=Column(String(255), primary_key=True))
    item_id: str = Field(sa_column=Column(String(8), nullable=False))
    concept_map_id: str = Field(sa_column=Column(String(64), nullable=False, index=True))


class UnmappedCodeRow(SQLModel, table=True):
    """Incoming result codes that map to no catalog item, counted per hospital (what integrators fix first)."""

    __tablename__ = "unmapped_code"

    org_id: str = Field(sa_column=Column(String(64), primary_key=True))
    system: str = Field(sa_column=Column(String(255), primary_key=True))
    code: str = Field(sa_column=Column(String(255), primary_key=True))
    display: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    resource_type: str = Field(sa_column=Column(String(40), nullable=False))
    count: int = Field(sa_column=Column(Integer, nullable=False))
    first_seen: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    last_seen: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class QualificationRow(SQLModel, table=True):
    """Quality-control (EQA) qualification of an organization for an item or a group, in a scope, over dates."""

    __tablename__ = "qualification"
    __table_args__ = (Index("ix_qualification_org", "org_id"),)

    id: str = Field(sa_column=Column(String(40), primary_key=True))
    org_id: str = Field(sa_column=Column(String(64), nullable=False))
    item_id: str | None = Field(default=None, sa_column=Column(String(8), nullable=True))
    group: str | None = Field(default=None, sa_column=Column(String(40), nullable=True))
    scope: str = Field(sa_column=Column(String(40), nullable=False))
    valid_from: date = Field(sa_column=Column(Date, nullable=False))
    valid_to: date | None = Field(default=None, sa_column=Column(Date, nullable=True))
    note: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))
    created: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    revoked: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class CardRow(SQLModel, table=True):
    """Every recognition advice given (a CDS card or a $recognition-check result): what a decision refers to."""

    __tablename__ = "recognition_card"

    uuid: str = Field(sa_column=Column(String(40), primary_key=True))
    issued: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    source: str = Field(sa_column=Column(String(40), nullable=False))  # order-select | order-sign | operation
    client_id: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    ordering_org: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    patient_key: str = Field(sa_column=Column(String(64), nullable=False))
    order_ref: str | None = Field(default=None, sa_column=Column(String(200), nullable=True))
    item_id: str = Field(sa_column=Column(String(8), nullable=False))
    status: str = Field(sa_column=Column(String(40), nullable=False))
    result_ref: str | None = Field(default=None, sa_column=Column(String(140), nullable=True))
    issuer_org: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    suggestion_uuid: str | None = Field(default=None, sa_column=Column(String(40), nullable=True))


class OrderCheckRow(SQLModel, table=True):
    """One row per order checked (a CDS call or an operation), for "orders checked" / "recognizable found"."""

    __tablename__ = "order_check"
    __table_args__ = (Index("ix_order_check_time", "checked_us"),)

    pk: int | None = Field(default=None, sa_column=Column(PK, primary_key=True, autoincrement=True))
    checked: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    checked_us: int = Field(sa_column=Column(BigInteger, nullable=False))
    source: str = Field(sa_column=Column(String(40), nullable=False))
    hook_instance: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    order_key: str = Field(sa_column=Column(String(300), nullable=False))  # the same order checked twice counts once
    client_id: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    ordering_org: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    patient_key: str = Field(sa_column=Column(String(64), nullable=False))
    item_id: str | None = Field(default=None, sa_column=Column(String(8), nullable=True))
    kind: str | None = Field(default=None, sa_column=Column(String(10), nullable=True))
    status: str = Field(sa_column=Column(String(40), nullable=False))
    issuer_org: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    card_uuid: str | None = Field(default=None, sa_column=Column(String(40), nullable=True))
    # earlier results were withheld from this hospital because the patient paused sharing (policy.consent)
    sharing_paused: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))


class DecisionRow(SQLModel, table=True):
    """The clinician's decision on a card: recognized, or declined with a coded reason. Append-only; one per card."""

    __tablename__ = "decision"
    __table_args__ = (
        Index("ix_decision_time", "recorded_us"),
        # one per card: a card has one patient, whose key the decision copies (a partitioned table's unique keys
        # hold its partition key: registry.store.partitions)
        UniqueConstraint("card_uuid", "patient_key", name="uq_decision_card"),
    )

    pk: int | None = Field(default=None, sa_column=Column(PK, primary_key=True, autoincrement=True))
    card_uuid: str = Field(sa_column=Column(String(40), nullable=False))
    recorded: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    recorded_us: int = Field(sa_column=Column(BigInteger, nullable=False))
    outcome_time: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    outcome: str = Field(sa_column=Column(String(20), nullable=False))  # recognized | declined
    reason_code: str | None = Field(default=None, sa_column=Column(String(4), nullable=True))
    counts_as_refusal: bool = Field(default=False, nullable=False)
    comment: str | None = Field(default=None, sa_column=Column(String(1000), nullable=True))
    source: str = Field(sa_column=Column(String(40), nullable=False))  # feedback | operation
    client_id: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    ordering_org: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    issuer_org: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    patient_key: str = Field(sa_column=Column(String(64), nullable=False))
    item_id: str = Field(sa_column=Column(String(8), nullable=False))
    kind: str = Field(sa_column=Column(String(10), nullable=False))
    fee_fen: int = Field(sa_column=Column(BigInteger, nullable=False))  # money as integer fen (0.01 yuan)
    result_ref: str | None = Field(default=None, sa_column=Column(String(140), nullable=True))
    # The card's status when it was issued: a same-hospital duplicate is counted on its own, never as a recognition.
    card_status: str | None = Field(default=None, sa_column=Column(String(40), nullable=True))
    # The card's result was no longer recognizable when the decision arrived (withdrawn, cancelled, removed).
    result_withdrawn: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))


class ConfigGenerationRow(SQLModel, table=True):
    """A counter bumped in the transaction of every change to recognition's configuration (code maps,
    organizations, qualifications): every process's cache of it is valid only for the generation it was read at."""

    __tablename__ = "config_generation"

    name: str = Field(sa_column=Column(String(40), primary_key=True))
    generation: int = Field(sa_column=Column(BigInteger, nullable=False))
