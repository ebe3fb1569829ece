"""Accepting Subscriptions and matching writes against them, in the transaction of the write (FHIR R4
subscription.html §2.46.5; docs/design.md §4).

- **Accepting** (a Subscription created or updated): the subscriber may subscribe (hospital system or admin-registered
  client), the channel and criteria are checked (:mod:`.criteria`), patients the criteria name are in the
  hospital's care context, and the status is the server's: ``requested`` (or ``active``) becomes ``active`` at once —
  R4 defines no handshake, and no ping is sent before activating; ``off`` stays ``off``.
- **Matching** (any DiagnosticReport, Observation, ImagingStudy or ServiceRequest written): the live subscriptions on
  the written type run their criteria restricted to ``_id`` of what was written — the very search a client would
  run, against the index the write just filled — and each match the subscriber may read under the one policy is
  queued, once per (subscription, resource version), in the same transaction: a write that commits has its
  notifications, one that rolls back has none.
- **Withdrawals**: an update to ``entered-in-error`` (or ``cancelled``) is notified like any update — for the
  resource's new state, as R4 rest-hook does — when the criteria still match it; a deletion is not notified
  (R4 §2.46.1: criteria apply to the resource's new value, and a deleted resource has none).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import orjson

from registry.auth import Principal, PrincipalKind, parse_scopes
from registry.errors import UnprocessableError
from registry.fhir.extract import date_range, to_us
from registry.fhir.json_text import with_changed_members
from registry.services import policy
from registry.services.subscriptions.criteria import (
    CRITERIA_TYPES,
    CriteriaParser,
    channel_of,
    header_lines,
    named_patients,
)
from registry.store.clients import ClientStore
from registry.store.query import IdClause, Query
from registry.store.records import Stored
from registry.store.repository import Repository
from registry.store.subscription_sql import SubscriptionSql


def subscriber_of(row: Any) -> Principal | None:
    """The subscriber as it stands now: None when its client was removed or disabled (nothing is delivered)."""
    if row is None or row.disabled:
        return None
    return Principal(row.client_id, PrincipalKind(row.kind), parse_scopes(row.scopes), row.org_id, row.patient_key,
                     row.name)  # fmt: skip


class SubscriptionMatcher:
    def __init__(self, criteria: CriteriaParser, *, allow_http_loopback: bool,
                 queued: Callable[[], None] = lambda: None) -> None:  # fmt: skip
        self.criteria = criteria
        self.allow_http_loopback = allow_http_loopback
        self.queued = queued  # told after a commit that queued notifications (wakes the delivery worker)

    # ------------------------------------------------------------------ accepting
    def accept(
        self, repo: Repository, principal: Principal, text: str, resource: dict[str, Any], now: datetime
    ) -> tuple[str, dict[str, Any]]:
        """The Subscription as the server holds it (status set), or a 403/422 refusal."""
        policy.check_subscriber(principal)
        channel_of(resource, allow_http_loopback=self.allow_http_loopback)
        criteria = self.criteria.parse(str(resource.get("criteria") or ""), now=now)
        org = principal.org_id or ""
        policy.check_named_patients(principal, named_patients(repo, criteria),
                                    lambda key: repo.has_care_context(org, key))  # fmt: skip
        status = resource.get("status")
        if status == "error":
            raise UnprocessableError("Subscription.status: error is set by the server; submit requested or off",
                                     expression=["Subscription.status"])  # fmt: skip
        after = {**resource, "status": "off" if status == "off" else "active"}
        after.pop("error", None)  # the server's record of the last failure, never the client's
        if after == resource:
            return text, resource
        return with_changed_members(text, resource, after), after

    # ------------------------------------------------------------------ in the write's transaction
    def after_write(self, repo: Repository, principal: Principal, written: Mapping[tuple[str, str], Stored],
                    now: datetime) -> bool:  # fmt: skip
        """Keep the subscription rows in step with written Subscriptions and queue the notifications of every other
        write; True when something was queued."""
        subs = SubscriptionSql(repo.conn)
        for (rtype, rid), stored in written.items():
            if rtype != "Subscription":
                continue
            if stored.deleted:
                subs.drop_subscription(rid)
            else:
                subs.put_subscription(self._row(stored, principal, now))
        types = sorted({t for t, _ in written if t in CRITERIA_TYPES})
        if not types:
            return False
        live = subs.live_subscriptions(types, to_us(now))
        if not live:
            return False
        clients = ClientStore(repo.conn)
        subscribers: dict[str, Principal | None] = {}
        rows: list[dict[str, Any]] = []
        for sub in live:
            ids = tuple(rid for (t, rid), st in written.items() if t == sub.criteria_type and not st.deleted)
            if not ids:
                continue
            try:
                criteria = self.criteria.parse(sub.criteria, now=now)
            except UnprocessableError:
                continue  # accepted once, no longer parses (a search parameter removed since): matches nothing
            found, _ = repo.search(Query(sub.criteria_type, (*criteria.clauses, IdClause(ids)), count=len(ids)))
            if sub.client_id not in subscribers:
                subscribers[sub.client_id] = subscriber_of(clients.get(sub.client_id))
            subscriber = subscribers[sub.client_id]
            if subscriber is None:
                continue
            for stored in found:
                if policy.may_receive(subscriber, stored, repo.has_care_context):
                    rows.append({"subscription_id": sub.id, "resource_type": stored.type, "resource_id": stored.id,
                                 "version": stored.version, "state": "pending", "queued": now, "due_us": to_us(now),
                                 "attempts": 0})  # fmt: skip
        return subs.queue(rows) > 0

    def _row(self, stored: Stored, principal: Principal, now: datetime) -> dict[str, Any]:
        doc = orjson.loads(stored.body)
        channel = channel_of(doc, allow_http_loopback=True)  # checked with the setting when it was accepted
        criteria = str(doc.get("criteria") or "").strip()
        end = doc.get("end")
        end_us: int | None = None
        if isinstance(end, str):
            end_us = date_range(end, self.criteria.local_tz)[0]
        return {
            "id": stored.id, "criteria_type": criteria.partition("?")[0], "criteria": criteria,
            "status": str(doc.get("status")), "client_id": principal.client_id, "org_id": stored.org_id,
            "endpoint": channel.endpoint, "payload": channel.payload,
            "headers": orjson.dumps(header_lines(channel.headers)).decode(), "end_us": end_us, "failures": 0,
            "error": doc.get("error"), "updated": now,
        }  # fmt: skip
