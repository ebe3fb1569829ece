"""Bundles as the server sends them (FHIR R4 §Bundle): searchset, history and transaction/batch responses.

Stored resources go in as :class:`orjson.Fragment` — their bytes exactly as stored, never parsed and re-serialized.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from registry.fhir.ids import new_id


def instant(moment: datetime) -> str:
    """FHIR instant in UTC with millisecond precision."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def weak_etag(version: int) -> str:
    return f'W/"{version}"'


@dataclass(frozen=True, slots=True)
class Entry:
    full_url: str | None
    body: bytes | None = None
    search_mode: str | None = None  # match | include | outcome
    request: dict[str, str] | None = None
    response: dict[str, str] | None = None
    outcome: dict[str, Any] | None = None


def render(
    bundle_type: str,
    entries: Sequence[Entry],
    *,
    now: datetime,
    total: int | None = None,
    links: Sequence[tuple[str, str]] = (),
) -> bytes:
    out: list[dict[str, Any]] = []
    for e in entries:
        item: dict[str, Any] = {}
        if e.full_url:
            item["fullUrl"] = e.full_url
        if e.body is not None:
            item["resource"] = orjson.Fragment(e.body)
        if e.search_mode:
            item["search"] = {"mode": e.search_mode}
        if e.request:
            item["request"] = e.request
        if e.response is not None:
            response = dict(e.response)
            item["response"] = response
            if e.outcome is not None:
                item["response"]["outcome"] = e.outcome
        out.append(item)
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": new_id(),
        "meta": {"lastUpdated": instant(now)},
        "type": bundle_type,
    }
    if total is not None:
        bundle["total"] = total
    if links:
        bundle["link"] = [{"relation": rel, "url": url} for rel, url in links]
    bundle["entry"] = out
    return orjson.dumps(bundle)
