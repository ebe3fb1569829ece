"""Operating the recognition data: quality-control qualifications, unmapped codes, and the result index's rebuild
and consistency check (``hr-registry qualifications|codes|index …`` and ``/admin/…``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from catalog import Catalog
from registry.auth import Principal
from registry.errors import BadRequestError, NotFoundError
from registry.services import policy
from registry.services.config_cache import ConfigCache
from registry.services.result_index import INDEXED, IndexRow, ResultIndexer
from registry.store.recognition import RecognitionStore
from registry.store.repository import UnitOfWork


@dataclass(frozen=True, slots=True)
class IndexDifference:
    missing: list[dict[str, Any]]  # rows a recomputation gives that the index lacks
    extra: list[dict[str, Any]]  # rows the index has that a recomputation does not give

    @property
    def clean(self) -> bool:
        return not self.missing and not self.extra


def _qualification_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "org": row["org_id"], "item": row["item_id"], "group": row["group"], "scope": row["scope"],
        "valid_from": row["valid_from"].isoformat(),
        "valid_to": row["valid_to"].isoformat() if row["valid_to"] else None,
        "note": row["note"], "revoked": row["revoked"].isoformat() if row["revoked"] else None,
    }  # fmt: skip


def _date(value: Any, field: str) -> date | None:
    if value in (None, ""):
        return None
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise BadRequestError(f"{field} must be a date (YYYY-MM-DD), got {value!r}") from None


class Administration:
    def __init__(
        self,
        uow: UnitOfWork,
        catalog: Catalog,
        indexer: ResultIndexer,
        clock: Callable[[], datetime],
        cache: ConfigCache | None = None,
    ):
        self.cache = cache
        self.uow = uow
        self.catalog = catalog
        self.indexer = indexer
        self.clock = clock

    @staticmethod
    def _admin(principal: Principal) -> None:
        policy.require_admin(principal, "manage qualifications")

    # ------------------------------------------------------------------ qualifications
    def qualifications(self, principal: Principal, org: str | None = None) -> list[dict[str, Any]]:
        org = policy.own_organization(principal, org, "qualifications")
        with self.uow.begin(audit_only=True) as repo:
            rows = RecognitionStore(repo.conn).qualifications([org] if org else None, include_revoked=True)
        return [_qualification_json(r._mapping) for r in rows]

    def add(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """``{"org", "item" | "group", "scope", "valid_from", "valid_to"?, "note"?}``."""
        self._admin(principal)
        org = body.get("org")
        item, group = body.get("item"), body.get("group")
        scope = body.get("scope")
        if not isinstance(org, str) or not org:
            raise BadRequestError("org (an Organization id) is required")
        if (item is None) == (group is None):
            raise BadRequestError("give exactly one of item (an item id) or group (a catalog group)")
        if item is not None and item not in self.catalog:
            raise BadRequestError(f"unknown catalog item {item!r}")
        if group is not None and group not in self.catalog.groups:
            raise BadRequestError(f"unknown catalog group {group!r}; groups: {', '.join(self.catalog.groups)}")
        if scope not in self.catalog.scopes:
            raise BadRequestError(f"scope must be one of {', '.join(self.catalog.scopes)}")
        valid_from = _date(body.get("valid_from"), "valid_from")
        valid_to = _date(body.get("valid_to"), "valid_to")
        if valid_from is None:
            raise BadRequestError("valid_from is required")
        if valid_to is not None and valid_to < valid_from:
            raise BadRequestError("valid_to is before valid_from")
        row = {
            "id": body.get("id") or uuid.uuid4().hex[:16], "org_id": org, "item_id": item, "group": group,
            "scope": scope, "valid_from": valid_from, "valid_to": valid_to, "note": body.get("note"),
            "created": self.clock(), "revoked": None,
        }  # fmt: skip
        with self.uow.begin() as repo:
            if not repo.get_many([("Organization", org)]):
                raise BadRequestError(f"Organization/{org} is not known to the registry")
            RecognitionStore(repo.conn).add_qualification(row)
            ConfigCache.changed(repo.conn)  # every process's next order check sees it
        return _qualification_json(row)

    def revoke(self, principal: Principal, qual_id: str) -> None:
        self._admin(principal)
        with self.uow.begin() as repo:
            if not RecognitionStore(repo.conn).revoke_qualification(qual_id, self.clock()):
                raise NotFoundError(f"no active qualification {qual_id!r}")
            ConfigCache.changed(repo.conn)  # every process's next order check sees it

    # ------------------------------------------------------------------ unmapped codes
    def unmapped_for(self, principal: Principal, org: str | None, limit: int = 500) -> list[dict[str, Any]]:
        """Unmapped codes as a principal may see them: an admin any hospital's, a hospital system its own."""
        return self.unmapped(policy.own_organization(principal, org, "unmapped codes"), limit)

    def unmapped(self, org: str | None, limit: int = 500) -> list[dict[str, Any]]:
        with self.uow.begin(audit_only=True) as repo:
            rows = repo.unmapped_codes(org, limit)
        return [
            {"org": r.org_id, "system": r.system, "code": r.code, "display": r.display, "count": r.count,
             "resource_type": r.resource_type, "first_seen": r.first_seen.isoformat(),
             "last_seen": r.last_seen.isoformat()}
            for r in rows
        ]  # fmt: skip

    # ------------------------------------------------------------------ the index
    def _batches(self, size: int) -> Iterator[list[tuple[str, str]]]:
        after = 0
        while True:
            with self.uow.begin(audit_only=True) as repo:
                refs, after = repo.indexed_resources(after, size, INDEXED)
            if not refs:
                return
            yield refs

    def count_indexable(self) -> int:
        with self.uow.begin(audit_only=True) as repo:
            return repo.count_types(INDEXED)

    def rebuild(self, batch: int = 500, progress: Callable[[int], None] | None = None) -> int:
        """Recompute every row from the stored resources, in batches (each its own transaction)."""
        done = 0
        for refs in self._batches(batch):
            with self.uow.begin() as repo:
                self.indexer.reindex(repo, refs)
            done += len(refs)
            if progress is not None:
                progress(len(refs))
        with self.uow.begin() as repo:
            repo.drop_orphan_index_rows()
        return done

    def check(self, batch: int = 500, progress: Callable[[int], None] | None = None) -> IndexDifference:
        """Compare the index with a recomputation from the stored resources (changing nothing)."""
        missing: list[dict[str, Any]] = []
        extra: list[dict[str, Any]] = []
        for refs in self._batches(batch):
            with self.uow.begin(audit_only=True) as repo:
                expected = {_key(r) for r in self.indexer.compute(repo, refs)}
                actual = {_key(r) for r in repo.index_rows_of(refs)}
            missing += [dict(k) for k in sorted(expected - actual, key=_order)]
            extra += [dict(k) for k in sorted(actual - expected, key=_order)]
            if progress is not None:
                progress(len(refs))
        return IndexDifference(missing, extra)


def _order(key: tuple[tuple[str, Any], ...]) -> tuple[tuple[str, bool, str], ...]:
    """A row key as something sortable whatever its values (a report id may be None in one row, text in another)."""
    return tuple((name, value is not None, str(value)) for name, value in key)


def _key(row: IndexRow | dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    data = row.as_dict() if isinstance(row, IndexRow) else row
    return tuple(sorted((k, data[k]) for k in IndexRow.__slots__ if k in data))
