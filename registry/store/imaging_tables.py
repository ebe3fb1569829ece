"""The studies opened through the DICOMweb gateway (``registry.services.imaging``): one row per principal, study,
purpose of use and hour, so each study a principal opens is **one** AuditEvent — not one per frame or thumbnail —
however many registry processes serve its frames. The row is inserted with ``INSERT … ON CONFLICT DO NOTHING`` in the
transaction that writes the audit row; only the insert that created it writes one."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, String
from sqlmodel import Field, SQLModel


class StudyOpenRow(SQLModel, table=True):
    """``hour``: whole hours since the epoch (UTC) of the registry's clock when the study was opened; ``purpose``:
    ``BTG`` for a break-glass opening (recorded apart from an ordinary one), else empty."""

    __tablename__ = "imaging_study_open"
    __table_args__ = (Index("ix_imaging_study_open_hour", "hour"),)

    client_id: str = Field(sa_column=Column(String(100), primary_key=True))
    study_id: str = Field(sa_column=Column(String(64), primary_key=True))  # the ImagingStudy resource id
    purpose: str = Field(sa_column=Column(String(10), primary_key=True))
    hour: int = Field(sa_column=Column(BigInteger, primary_key=True))
