"""The ``patient-view`` reminder cards and the feedback on them (CDS Hooks 2.0 §Feedback: a card's ``uuid`` "SHALL"
come back in feedback). A reminder lists several results and records no recognition decision: its feedback is kept
apart from ``decision`` and never counted in the statistics."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, Integer, String, UniqueConstraint
from sqlmodel import Field, SQLModel

PK = BigInteger().with_variant(Integer, "sqlite")


class ReminderCardRow(SQLModel, table=True):
    """One ``patient-view`` card issued: to whom (client, hospital), about whom, by which service."""

    __tablename__ = "reminder_card"

    uuid: str = Field(sa_column=Column(String(40), primary_key=True))
    issued: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    source: str = Field(sa_column=Column(String(40), nullable=False))  # the hook: patient-view
    client_id: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    ordering_org: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    patient_key: str = Field(sa_column=Column(String(64), nullable=False))
    results: int = Field(sa_column=Column(Integer, nullable=False))  # how many results the card listed


class ReminderFeedbackRow(SQLModel, table=True):
    """The clinician's feedback on a reminder card, one per card (a repeat changes nothing)."""

    __tablename__ = "reminder_feedback"
    # one per card (its patient's key copied from the card: registry.store.partitions)
    __table_args__ = (UniqueConstraint("card_uuid", "patient_key", name="uq_reminder_feedback_card"),)

    pk: int | None = Field(default=None, sa_column=Column(PK, primary_key=True, autoincrement=True))
    card_uuid: str = Field(sa_column=Column(String(40), nullable=False))
    patient_key: str = Field(sa_column=Column(String(64), nullable=False))
    recorded: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    outcome_time: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    outcome: str = Field(sa_column=Column(String(20), nullable=False))  # accepted | overridden (CDS Hooks terms)
    reason_system: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    reason_code: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    comment: str | None = Field(default=None, sa_column=Column(String(1000), nullable=True))
    client_id: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
