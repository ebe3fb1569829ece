"""What the store hands back and takes: stored resources and versions, a write plan, audit filters, and the table
handles every SQL module shares (docs/design.md §4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from registry.fhir.extract import IndexValues
from registry.store.query import DateValue
from registry.store.tables import metadata

R = cast(Any, metadata.tables["resource"])
V = cast(Any, metadata.tables["resource_version"])
TOK = cast(Any, metadata.tables["sp_token"])
STR = cast(Any, metadata.tables["sp_string"])
DAT = cast(Any, metadata.tables["sp_date"])
REF = cast(Any, metadata.tables["sp_reference"])
IDN = cast(Any, metadata.tables["resource_identifier"])
AUD = cast(Any, metadata.tables["audit_event"])
RIX = cast(Any, metadata.tables["result_index"])
CMAP = cast(Any, metadata.tables["code_map"])
UNM = cast(Any, metadata.tables["unmapped_code"])

MAX_INDEX_TEXT = 255


class DuplicateIdentifierError(Exception):
    """Another live resource of the type already holds this business identifier (a lost race, or a re-push)."""


@dataclass(frozen=True, slots=True)
class Stored:
    pk: int
    type: str
    id: str
    version: int
    last_updated: datetime
    deleted: bool
    patient_key: str | None
    org_id: str | None
    content_hash: str
    body: bytes


@dataclass(frozen=True, slots=True)
class StoredVersion:
    type: str
    id: str
    version: int
    last_updated: datetime
    method: str
    deleted: bool
    body: bytes | None


@dataclass(slots=True)
class WritePlan:
    creates: list[NewContent] = field(default_factory=list)
    replaces: list[tuple[Stored, NewContent]] = field(default_factory=list)
    deletes: list[Stored] = field(default_factory=list)


@dataclass(slots=True)
class NewContent:
    """Everything a write stores besides the server-assigned version."""

    type: str
    id: str
    body: bytes
    content_hash: str
    patient_key: str | None
    org_id: str | None
    index: IndexValues
    identifiers: set[tuple[str, str]] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class AgentMatch:
    """One ``agent`` search parameter: rows whose requesting client or whose requestor's organization is one of
    these (comma = OR); several parameters must all match (AND)."""

    client_ids: tuple[str, ...] = ()
    org_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuditFilter:
    count: int = 50
    patient_keys: tuple[str, ...] | None = None
    agents: tuple[AgentMatch, ...] = ()
    exclude_client_ids: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()
    resource_types: tuple[str, ...] = ()
    dates: tuple[DateValue, ...] = ()
    before_pk: int | None = None
    pk: int | None = None


def utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes (stored in UTC); PostgreSQL aware ones."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def clip(text: str) -> str:
    return text[:MAX_INDEX_TEXT]
