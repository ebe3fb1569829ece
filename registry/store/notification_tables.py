"""Patient notifications (docs/notifications.md): each patient's choices per channel, and the durable queue of
messages to the gateway — one row per (resource version, channel), written in the transaction of the report it is
about, delivered by the registry's worker with retries, dead letters kept for an admin."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Column, DateTime, Index, Integer, String, UniqueConstraint, false
from sqlmodel import Field, SQLModel

PK = BigInteger().with_variant(Integer, "sqlite")


class NotificationPreferenceRow(SQLModel, table=True):
    """What one patient (master key) chose: channels on or off, the language, and the portal account the gateway
    addresses them by (the registry keeps no phone number or device token: the gateway knows them)."""

    __tablename__ = "notification_preference"

    patient_key: str = Field(sa_column=Column(String(64), primary_key=True))
    recipient: str = Field(sa_column=Column(String(100), nullable=False))
    sms: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    push: bool = Field(default=False, sa_column=Column(Boolean, nullable=False, server_default=false()))
    language: str = Field(sa_column=Column(String(8), nullable=False))
    updated: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class NotificationRow(SQLModel, table=True):
    """One message to the gateway. ``key`` is its idempotency key (the gateway dedupes by it); ``status`` is
    ``queued``, ``sent`` or ``dead``; a queued row is due at ``due_us`` (a claimed one is leased until then)."""

    __tablename__ = "notification"
    __table_args__ = (
        UniqueConstraint("resource_type", "resource_id", "version", "channel", name="uq_notification_version"),
        Index("ix_notification_due", "status", "due_us"),
        Index("ix_notification_patient", "patient_key", "pk"),
    )

    pk: int | None = Field(default=None, sa_column=Column(PK, primary_key=True, autoincrement=True))
    key: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    resource_type: str = Field(sa_column=Column(String(40), nullable=False))
    resource_id: str = Field(sa_column=Column(String(64), nullable=False))
    version: int = Field(sa_column=Column(Integer, nullable=False))
    channel: str = Field(sa_column=Column(String(10), nullable=False))
    patient_key: str = Field(sa_column=Column(String(64), nullable=False))
    recipient: str = Field(sa_column=Column(String(100), nullable=False))
    language: str = Field(sa_column=Column(String(8), nullable=False))
    text: str = Field(sa_column=Column(String(500), nullable=False))
    status: str = Field(sa_column=Column(String(10), nullable=False))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    due_us: int = Field(sa_column=Column(BigInteger, nullable=False))
    claim: str | None = Field(default=None, sa_column=Column(String(40), nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    created: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    sent: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
