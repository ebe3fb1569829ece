"""The fast projection of the patients' sharing consent (docs/design.md §6 consent): the ``Consent`` resources are the
record (with their history); these rows, written in the same transaction, let the policy decide with one indexed
look-up per patient instead of a FHIR search per call.

- ``share_restriction``: one row per hospital the patient paused sharing with (``org_id``), or ``*`` for every
  hospital other than the issuer;
- ``sensitive_share``: one row per patient who gave the separate consent to share sensitive items (PIPL Art. 29);
  no row, the default, means sensitive results stay with their issuer.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, String
from sqlmodel import Field, SQLModel

ALL_HOSPITALS = "*"


class ShareRestrictionRow(SQLModel, table=True):
    """A pause: the patient's results are not shared with ``org_id`` (or with any other hospital: ``*``)."""

    __tablename__ = "share_restriction"

    patient_key: str = Field(sa_column=Column(String(64), primary_key=True))
    org_id: str = Field(sa_column=Column(String(64), primary_key=True))
    consent_id: str = Field(sa_column=Column(String(64), nullable=False))  # the Consent resource it projects
    since: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class SensitiveShareRow(SQLModel, table=True):
    """The patient's separate consent to share sensitive items (HIV, syphilis, hepatitis serology…)."""

    __tablename__ = "sensitive_share"

    patient_key: str = Field(sa_column=Column(String(64), primary_key=True))
    consent_id: str = Field(sa_column=Column(String(64), nullable=False))
    since: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
