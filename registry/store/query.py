"""Search as the store takes it: one clause per FHIR search parameter (FHIR R4 §search), sort keys, paging, and the
signed keyset cursors of ``next`` links."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson


# ---------------------------------------------------------------------------- search clauses
@dataclass(frozen=True, slots=True)
class TokenValue:
    system: str | None  # None: any system
    code: str | None  # None: any code (``system|``)


@dataclass(frozen=True, slots=True)
class TokenClause:
    param: str
    values: tuple[TokenValue, ...]
    negate: bool = False


@dataclass(frozen=True, slots=True)
class StringClause:
    param: str
    values: tuple[str, ...]  # already normalized for prefix/contains; as given for exact
    mode: str = "prefix"  # prefix | exact | contains


@dataclass(frozen=True, slots=True)
class DateValue:
    prefix: str
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class DateClause:
    param: str
    values: tuple[DateValue, ...]


@dataclass(frozen=True, slots=True)
class ReferenceClause:
    param: str
    values: tuple[tuple[str | None, str], ...]  # (target type or None, id)


@dataclass(frozen=True, slots=True)
class ChainClause:
    """``param.target_param=value``: references whose target (of ``target_type``) matches ``inner``."""

    param: str
    target_type: str
    inner: TokenClause | StringClause | DateClause | ReferenceClause


@dataclass(frozen=True, slots=True)
class MissingClause:
    param: str
    kind: str  # token | string | date | reference
    missing: bool


@dataclass(frozen=True, slots=True)
class IdClause:
    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LastUpdatedClause:
    values: tuple[DateValue, ...]


@dataclass(frozen=True, slots=True)
class PatientKeyClause:
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CareContextClause:
    """Only patients who have a local identity (a Patient) at this organization (docs/design.md §6)."""

    org_id: str


@dataclass(frozen=True, slots=True)
class SharingClause:
    """Only what the patients share with this organization (docs/design.md §6 consent): its own resources, and other
    issuers' unless the patient paused sharing with it (or with all), or they are sensitive results
    (``sensitive_items``) without the patient's separate consent."""

    org_id: str
    sensitive_items: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OrgClause:
    """Only resources that belong to this organization (a hospital's conditional writes see only its own)."""

    org_id: str


Clause = (
    TokenClause
    | StringClause
    | DateClause
    | ReferenceClause
    | ChainClause
    | MissingClause
    | IdClause
    | LastUpdatedClause
    | PatientKeyClause
    | CareContextClause
    | SharingClause
    | OrgClause
)


@dataclass(frozen=True, slots=True)
class SortKey:
    param: str  # _id | _lastUpdated | a date parameter
    descending: bool


@dataclass(frozen=True, slots=True)
class Query:
    type: str
    clauses: tuple[Clause, ...] = ()
    sort: tuple[SortKey, ...] = ()
    count: int = 50
    cursor: tuple[Any, ...] | None = None  # sort values then pk of the last row of the previous page
    snapshot: int | None = None  # highest resource pk visible to this paging session


def encode_cursor(values: Sequence[Any], snapshot: int, key: bytes, scope: str) -> str:
    payload = base64.urlsafe_b64encode(orjson.dumps({"v": list(values), "s": snapshot})).decode().rstrip("=")
    mac = hmac.new(key, f"{scope}|{payload}".encode(), hashlib.sha256).digest()[:16]
    return payload + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def decode_cursor(token: str, key: bytes, scope: str) -> tuple[tuple[Any, ...], int]:
    """The sort values and snapshot of a cursor this server made for this search; ValueError otherwise."""
    payload, sep, mac_text = token.partition(".")
    expected = hmac.new(key, f"{scope}|{payload}".encode(), hashlib.sha256).digest()[:16]
    try:
        mac = base64.urlsafe_b64decode(mac_text + "=" * (-len(mac_text) % 4))
        data = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        values, snapshot = tuple(data["v"]), int(data["s"])
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise ValueError("not a paging cursor of this server") from None
    if not sep or not hmac.compare_digest(mac, expected):
        raise ValueError("not a paging cursor of this server, or not for this search")
    if not values or not isinstance(values[-1], int):
        raise ValueError("not a paging cursor of this server")
    return values, snapshot
