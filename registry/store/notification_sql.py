"""SQL of patient notifications (docs/notifications.md): preferences, the queue written in a report's transaction,
claiming due messages (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several server processes share the queue), and
what the worker, the CLI and the portal read of it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import func, select, update

from registry.store.records import RIX, utc
from registry.store.sql_base import SqlBase
from registry.store.tables import metadata

PREF = cast(Any, metadata.tables["notification_preference"])
NTF = cast(Any, metadata.tables["notification"])

QUEUED, SENT, DEAD = "queued", "sent", "dead"


@dataclass(frozen=True, slots=True)
class Preference:
    patient_key: str
    recipient: str
    sms: bool
    push: bool
    language: str
    updated: datetime

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(c for c, on in (("sms", self.sms), ("push", self.push)) if on)


@dataclass(frozen=True, slots=True)
class Message:
    """One queued or delivered notification, as the worker and the pages read it."""

    pk: int
    key: str
    resource_type: str
    resource_id: str
    version: int
    channel: str
    recipient: str
    language: str
    text: str
    status: str
    attempts: int
    due_us: int
    last_error: str | None
    created: datetime
    sent: datetime | None


def _message(row: Any) -> Message:
    return Message(row.pk, row.key, row.resource_type, row.resource_id, row.version, row.channel, row.recipient,
                   row.language, row.text, row.status, row.attempts, row.due_us, row.last_error, utc(row.created),
                   utc(row.sent) if row.sent is not None else None)  # fmt: skip


def _preference(row: Any) -> Preference:
    return Preference(row.patient_key, row.recipient, bool(row.sms), bool(row.push), row.language, utc(row.updated))


class NotificationSql(SqlBase):
    # ------------------------------------------------------------------ preferences
    def preferences(self, patient_keys: Iterable[str]) -> dict[str, Preference]:
        wanted = sorted(set(patient_keys))
        out: dict[str, Preference] = {}
        for i in range(0, len(wanted), 500):
            rows = self.conn.execute(select(PREF).where(PREF.c.patient_key.in_(wanted[i : i + 500])))
            out.update({row.patient_key: _preference(row) for row in rows})
        return out

    def save_preference(self, pref: Preference) -> None:
        values = {"patient_key": pref.patient_key, "recipient": pref.recipient, "sms": pref.sms, "push": pref.push,
                  "language": pref.language, "updated": pref.updated}  # fmt: skip
        if self.postgres:
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            ins: Any = pg_insert(PREF)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            ins = sqlite_insert(PREF)
        changed = {k: ins.excluded[k] for k in values if k != "patient_key"}
        self.conn.execute(ins.values(values).on_conflict_do_update(index_elements=["patient_key"], set_=changed))

    # ------------------------------------------------------------------ the queue
    def enqueue(self, rows: Sequence[dict[str, Any]]) -> None:
        """Queue messages; one already queued for the same (resource version, channel) is kept as it is."""
        if rows:
            self.conn.execute(self._insert_ignore(NTF), list(rows))

    def claim(self, *, now_us: int, lease_until_us: int, limit: int, token: str) -> list[Message]:
        """Take up to ``limit`` due messages for delivery: they stay ``queued`` but are due again only when the
        lease ends, so a process that dies mid-delivery loses nothing (the gateway dedupes the repeat by key)."""
        due = select(NTF.c.pk).where(NTF.c.status == QUEUED, NTF.c.due_us <= now_us).order_by(NTF.c.due_us, NTF.c.pk)
        due = due.limit(limit)
        if self.postgres:
            due = due.with_for_update(skip_locked=True)  # several workers: each takes rows the others have not
        pks = [row.pk for row in self.conn.execute(due)]
        if not pks:
            return []
        self.conn.execute(
            update(NTF).where(NTF.c.pk.in_(pks)).values(claim=token, due_us=lease_until_us, attempts=NTF.c.attempts + 1)
        )
        rows = self.conn.execute(select(NTF).where(NTF.c.pk.in_(pks)).order_by(NTF.c.pk))
        return [_message(row) for row in rows]

    def mark_sent(self, pks: Sequence[int], *, now: datetime, token: str) -> None:
        if pks:
            self.conn.execute(
                update(NTF)
                .where(NTF.c.pk.in_(list(pks)), NTF.c.claim == token)
                .values(status=SENT, sent=now, claim=None, last_error=None)
            )

    def mark_failed(self, pk: int, *, token: str, due_us: int, error: str, dead: bool) -> None:
        self.conn.execute(
            update(NTF)
            .where(NTF.c.pk == pk, NTF.c.claim == token)
            .values(status=DEAD if dead else QUEUED, due_us=due_us, claim=None, last_error=error[:255])
        )

    def retry(self, *, now_us: int, pks: Sequence[int] | None = None) -> int:
        """Dead letters (all, or these) back in the queue with their attempts reset."""
        stmt = update(NTF).where(NTF.c.status == DEAD)
        if pks is not None:
            stmt = stmt.where(NTF.c.pk.in_(list(pks)))
        result = self.conn.execute(stmt.values(status=QUEUED, attempts=0, due_us=now_us, claim=None))
        return int(result.rowcount or 0)

    # ------------------------------------------------------------------ reading
    def counts(self) -> dict[str, int]:
        rows = self.conn.execute(select(NTF.c.status, func.count()).group_by(NTF.c.status))
        return {str(status): int(n) for status, n in rows}

    def oldest_queued_us(self) -> int | None:
        row = self.conn.execute(select(func.min(NTF.c.created)).where(NTF.c.status == QUEUED)).scalar_one_or_none()
        return int(utc(row).timestamp() * 1_000_000) if row is not None else None

    def messages(self, *, status: str | None = None, patient_key: str | None = None, limit: int = 100) -> list[Message]:
        stmt = select(NTF)
        if status is not None:
            stmt = stmt.where(NTF.c.status == status)
        if patient_key is not None:
            stmt = stmt.where(NTF.c.patient_key == patient_key)
        rows = self.conn.execute(stmt.order_by(NTF.c.pk.desc()).limit(limit))
        return [_message(row) for row in rows]

    # ------------------------------------------------------------------ what a report is about
    def report_items(self, reports: Iterable[tuple[str, str]]) -> dict[str, set[tuple[str, str]]]:
        """(patient key, report id) → the (catalog item, resource type) rows the result index holds for the report
        and its results (rows this transaction just wrote); looked up by patient first, as the index is laid out."""
        out: dict[str, set[tuple[str, str]]] = {}
        wanted = sorted(set(reports))
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            rows = self.conn.execute(
                select(RIX.c.report_id, RIX.c.item_id, RIX.c.res_type).where(
                    RIX.c.patient_key.in_(sorted({k for k, _ in chunk})),
                    RIX.c.report_id.in_(sorted({r for _, r in chunk})),
                )
            )
            for row in rows:
                out.setdefault(str(row.report_id), set()).add((str(row.item_id), str(row.res_type)))
        return out
