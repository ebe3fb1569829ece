"""FHIR R4 Subscriptions (rest-hook): the active subscriptions as the matcher reads them, and the queue of their
notifications (docs/design.md §4).

- ``subscription``: one row per Subscription resource — its criteria's resource type (indexed: a write looks up only
  the subscriptions on its type), the criteria, the channel, the subscriber (client, organization), the status the
  server set and the consecutive failures. Kept in the transaction of every write of the resource.
- ``subscription_delivery``: one notification to send, unique per (subscription, resource type, id, version) — a
  resource version is queued once per subscriber whatever retries the write or the delivery go through. Rows are
  never deleted: ``delivered`` rows are the record, ``dead`` rows the dead letters (``hr-registry subscriptions``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

PK = BigInteger().with_variant(Integer, "sqlite")


class SubscriptionRow(SQLModel, table=True):
    __tablename__ = "subscription"
    __table_args__ = (Index("ix_subscription_type_status", "criteria_type", "status"),)

    id: str = Field(sa_column=Column(String(64), primary_key=True))  # the Subscription resource's id
    criteria_type: str = Field(sa_column=Column(String(40), nullable=False))
    criteria: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(sa_column=Column(String(16), nullable=False))  # requested | active | error | off
    client_id: str = Field(sa_column=Column(String(100), nullable=False))  # the subscriber
    org_id: str | None = Field(default=None, sa_column=Column(String(64), nullable=True))
    endpoint: str = Field(sa_column=Column(Text, nullable=False))
    payload: str | None = Field(default=None, sa_column=Column(String(100), nullable=True))
    headers: str = Field(sa_column=Column(Text, nullable=False))  # JSON array of "Name: value"
    end_us: int | None = Field(default=None, sa_column=Column(BigInteger, nullable=True))
    failures: int = Field(sa_column=Column(Integer, nullable=False))
    error: str | None = Field(default=None, sa_column=Column(String(1000), nullable=True))
    updated: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class SubscriptionDeliveryRow(SQLModel, table=True):
    __tablename__ = "subscription_delivery"
    __table_args__ = (
        UniqueConstraint("subscription_id", "resource_type", "resource_id", "version", name="uq_subscription_delivery"),
        Index("ix_subscription_delivery_due", "state", "due_us"),
        Index("ix_subscription_delivery_sub", "subscription_id", "state", "pk"),
    )

    pk: int | None = Field(default=None, sa_column=Column(PK, primary_key=True, autoincrement=True))
    subscription_id: str = Field(sa_column=Column(String(64), nullable=False))
    resource_type: str = Field(sa_column=Column(String(40), nullable=False))
    resource_id: str = Field(sa_column=Column(String(64), nullable=False))
    version: int = Field(sa_column=Column(Integer, nullable=False))
    state: str = Field(sa_column=Column(String(12), nullable=False))  # pending | delivered | dead | withheld
    queued: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    due_us: int = Field(sa_column=Column(BigInteger, nullable=False))  # next attempt (or the claim's lease end)
    attempts: int = Field(sa_column=Column(Integer, nullable=False))
    last_error: str | None = Field(default=None, sa_column=Column(String(1000), nullable=True))
    delivered: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
