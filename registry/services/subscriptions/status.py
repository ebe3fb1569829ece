"""The server's side of ``Subscription.status`` (FHIR R4 subscription.html §2.46.5): after repeated failed
notifications the server sets ``error`` and records the last one in ``Subscription.error``; after a later success
it is ``active`` again. Each change is a new version of the Subscription resource (its history shows when
deliveries failed), written with the subscription row in one transaction, by the server — its owner stays the same.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

import orjson

from registry.fhir.bundle import instant
from registry.fhir.content_hash import content_hash
from registry.fhir.extract import extract, to_us
from registry.fhir.json_text import with_changed_members, with_server_members
from registry.store.records import NewContent, WritePlan
from registry.store.repository import Repository


def write_status(repo: Repository, sid: str, status: str, error: str | None, *, now: datetime, local_tz: tzinfo,
                 base_url: str) -> bool:  # fmt: skip
    """Set ``status`` (and ``error``, or remove it) on the stored Subscription; False when nothing changed."""
    existing = repo.get_for_write([("Subscription", sid)]).get(("Subscription", sid))
    if existing is None or existing.deleted:
        return False
    text = existing.body.decode()
    before = orjson.loads(text)
    if before.get("status") == "off":
        return False  # switched off by its owner meanwhile: the owner's word stands
    after = {**before, "status": status}
    if error is None:
        after.pop("error", None)
    else:
        after["error"] = error
    if after == before:
        return False
    version = existing.version + 1
    meta = {**(before.get("meta") or {}), "versionId": str(version), "lastUpdated": instant(now)}
    body = with_server_members(with_changed_members(text, before, after), "Subscription", sid, meta).encode()
    content = NewContent("Subscription", sid, body, content_hash(after), None, existing.org_id,
                         extract(after, local_tz, base_url), set())  # fmt: skip
    repo.apply(WritePlan(replaces=[(existing, content)]), now=now, now_us=to_us(now))
    return True
