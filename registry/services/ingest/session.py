"""The state of one write: its context (settings and collaborators), the session of one transaction, and what
the entries being written look like on their way through (docs/design.md §4)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, TypeVar

from registry.auth import Principal
from registry.fhir.search_params import SEARCH_PARAMS
from registry.services.identity import IdentityPolicy
from registry.services.notifications.queue import Notifier
from registry.services.result_index import ResultIndexer
from registry.services.subscriptions import SubscriptionMatcher
from registry.store.records import NewContent, Stored
from registry.store.repository import Repository, UnitOfWork

SUPPORTED = frozenset(SEARCH_PARAMS)
T = TypeVar("T")
ATTEMPTS = 5
# Resources are prepared so that what others refer to is known first (a report's Patient, Observations, study…).
PREPARE_ORDER = {t: i for i, t in enumerate(("Organization", "Practitioner", "Endpoint", "Patient", "ServiceRequest",
                                             "ImagingStudy", "Observation", "DiagnosticReport"))}  # fmt: skip
EXECUTE_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3}


class RetryError(Exception):
    """A unique-key race was lost: run the whole operation again (it will now see the winner's row). ``repeats``:
    what this attempt learnt for the next — entries (by index) that repeat a stored resource (by id)."""

    def __init__(self, repeats: dict[int, str] | None = None) -> None:
        super().__init__("run the operation again")
        self.repeats = repeats or {}


@dataclass(frozen=True, slots=True)
class WriteContext:
    uow: UnitOfWork
    identity: IdentityPolicy
    base_url: str
    local_tz: tzinfo
    clock: Callable[[], datetime]
    max_bundle_entries: int
    indexer: ResultIndexer | None = None
    subscriptions: SubscriptionMatcher | None = None
    shared_systems: frozenset[str] = frozenset({"urn:dicom:uid", "urn:ietf:rfc:3986"})  # owned by nobody
    notifier: Notifier | None = None  # patient notifications, queued in the write's transaction


@dataclass(frozen=True, slots=True)
class WriteResult:
    status: int  # 200 or 201
    stored: Stored

    @property
    def location(self) -> str:
        return f"{self.stored.type}/{self.stored.id}/_history/{self.stored.version}"


@dataclass(slots=True)
class Pending:
    """A resource being written in the current transaction (what later entries may refer to)."""

    type: str
    id: str
    patient_key: str | None = None
    org_id: str | None = None
    identifiers: set[tuple[str, str]] = field(default_factory=set)


@dataclass(slots=True)
class Prepared:
    type: str
    id: str
    text: str
    meta: dict[str, Any]
    content: NewContent
    governed: list[tuple[str, tuple[str, str]]] = field(default_factory=list)  # (path, result it lists)


@dataclass(slots=True)
class Session:
    repo: Repository
    principal: Principal
    now: datetime
    pending: dict[tuple[str, str], Pending] = field(default_factory=dict)
    url_map: dict[str, str] = field(default_factory=dict)
    live: dict[tuple[str, str], tuple[str | None, str | None]] = field(default_factory=dict)  # (patient, issuer)
    by_identifier: dict[tuple[str, str, str], Stored | None] = field(default_factory=dict)  # batched look-ups
    subjects: dict[tuple[str, str], Stored | None] = field(default_factory=dict)  # stored Patients already read
    audit_rows: list[dict[str, Any]] = field(default_factory=list)
    owners: dict[str, str] = field(default_factory=dict)  # identifier system → the Organization owning it
    after_commit: list[Callable[[], None]] = field(default_factory=list)  # told once the transaction committed
    locking: bool = False  # lock the current rows as they are read (a retry after a lost race), not only when replaced
    # entries an earlier attempt found to repeat a stored resource, by index → that resource's id: other entries
    # that name them by fullUrl refer to it (a RetryError carries them)
    repeats: dict[int, str] = field(default_factory=dict)
