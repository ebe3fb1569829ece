"""Queueing notifications in the write's own transaction (docs/notifications.md §queue): the write engine calls
:meth:`Notifier.queue` after the plan is applied and the result index maintained, so a report and its notification
commit together or not at all — nothing is lost between them, and a rolled-back write notifies nobody.

One row per (resource version, channel): a new version of a DiagnosticReport whose status is final, amended or
corrected, for a patient who turned a channel on. An unchanged repeat writes no version, so it queues nothing; the
unique key makes a second attempt at the same version a no-op."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from catalog import Catalog, Item
from registry.fhir.extract import to_us
from registry.services.notifications.texts import NOTIFIED_STATUSES, Subject, compose
from registry.store.notification_sql import QUEUED, NotificationSql
from registry.store.recognition import RecognitionStore
from registry.store.records import Stored
from registry.store.repository import Repository

NOTIFIED_TYPES = frozenset({"DiagnosticReport"})
MAX_TEXT = 500  # the column's length; an SMS segment is 70 characters, so a long text is no use anyway


def message_key(resource_type: str, resource_id: str, version: int, channel: str, recipient: str) -> str:
    """The idempotency key the gateway dedupes by: the same (resource version, channel, recipient) → the same key,
    whichever process or attempt sends it."""
    raw = f"{resource_type}/{resource_id}/_history/{version}|{channel}|{recipient}"
    return hashlib.sha256(raw.encode()).hexdigest()


class Notifier:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def queue(self, repo: Repository, written: Mapping[tuple[str, str], Stored], *, now: datetime) -> int:
        """Queue the notifications this transaction's writes call for; returns how many rows were offered."""
        reports = [
            stored
            for (rtype, _rid), stored in written.items()
            if rtype in NOTIFIED_TYPES and not stored.deleted and stored.patient_key is not None
        ]
        if not reports:
            return 0
        sql = NotificationSql(repo.conn)
        prefs = sql.preferences(s.patient_key for s in reports if s.patient_key)
        wanted: list[tuple[Stored, str]] = []
        for stored in reports:
            pref = prefs.get(stored.patient_key or "")
            if pref is None or not pref.channels:
                continue
            status = orjson.loads(stored.body).get("status")
            if isinstance(status, str) and status in NOTIFIED_STATUSES:
                wanted.append((stored, status))
        if not wanted:
            return 0
        items = sql.report_items((s.patient_key or "", s.id) for s, _ in wanted)
        orgs = RecognitionStore(repo.conn).organizations(s.org_id for s, _ in wanted if s.org_id)
        rows: list[dict[str, Any]] = []
        now_us = to_us(now)
        for stored, status in wanted:
            pref = prefs[stored.patient_key or ""]
            found = items.get(stored.id, set())
            own = next((self.catalog.get(i) for i, t in found if t == "DiagnosticReport"), None)
            listed = {i for i, _ in found}
            every: list[Item] = [it for i in sorted(listed) if (it := self.catalog.get(i)) is not None]
            org = orgs.get(stored.org_id or "")
            subject = Subject(own, every, org.name if org is not None else None, status)
            text = compose(subject, pref.language)
            if len(text) > MAX_TEXT:  # a hospital's name of any length must never fail the report's write
                text = compose(Subject(None, (), None, status), pref.language)
            for channel in pref.channels:
                rows.append({
                    "key": message_key(stored.type, stored.id, stored.version, channel, pref.recipient),
                    "resource_type": stored.type, "resource_id": stored.id, "version": stored.version,
                    "channel": channel, "patient_key": pref.patient_key, "recipient": pref.recipient,
                    "language": pref.language, "text": text, "status": QUEUED, "attempts": 0, "due_us": now_us,
                    "claim": None, "last_error": None, "created": now, "sent": None,
                })  # fmt: skip
        sql.enqueue(rows)
        return len(rows)
