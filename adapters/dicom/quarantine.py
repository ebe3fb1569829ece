"""DICOM studies that could not be mapped, kept with the reason until the operator fixes the cause and replays them.

Nothing the adapter accepted is dropped without a trace: a study that reached the adapter (C-STORE, folder scan or
PACS pull) either goes to the outbox or is held here, in the outbox's own SQLite file, with the headers of all its
instances (the facts the mapping needs, never the pixels) and the reason in words an integration engineer can act
on. ``hr-adapter quarantine list|show|replay`` reads and replays it; ``hr-adapter outbox status`` counts it.

A C-STORE instance is answered Success once its header is committed (PS3.4 Annex B: a Level 0 storage SCP keeps the
attributes it documents, B.4.1; README "DICOM"), so a study held here was acknowledged to the modality: this table is
where the adapter keeps that promise. Holding a study and
marking its staged instances sent are one transaction, so a study is never both retried and held.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from adapters.dicom.headers import InstanceFacts, StudyFacts
from adapters.push.outbox import Outbox


@dataclass(frozen=True, slots=True)
class HeldStudy:
    study_uid: str
    source: str
    reason: str
    first_at: float
    last_at: float
    attempts: int
    instances: list[InstanceFacts]


class Quarantine:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def hold(self, study: StudyFacts, source: str, reason: str) -> bool:
        """Keep the study (its instances merged with any held before) with this reason; True when it is new here or
        its reason changed — the caller logs only then, so a study rescanned or re-pulled is logged once."""
        now = self.outbox.clock()
        instances = {i.sop_uid: i for s in study.series.values() for i in s.instances.values()}
        with self.outbox.transaction() as db:
            row = db.execute(
                "SELECT reason, headers FROM dicom_quarantine WHERE study_uid = ?", (study.uid,)
            ).fetchone()
            if row is not None:
                before = {i.sop_uid: i for i in _instances(row[1])}
                instances = before | instances
            headers = orjson.dumps([orjson.loads(i.to_json()) for i in instances.values()])
            db.execute(
                "INSERT INTO dicom_quarantine (study_uid, source, reason, first_at, last_at, attempts, headers) "
                "VALUES (?, ?, ?, ?, ?, 1, ?) ON CONFLICT (study_uid) DO UPDATE SET source = excluded.source, "
                "reason = excluded.reason, last_at = excluded.last_at, attempts = attempts + 1, "
                "headers = excluded.headers",
                (study.uid, source, reason, now, now, headers),
            )
            db.execute("UPDATE dicom_instance SET sent = 1 WHERE study_uid = ?", (study.uid,))
        return row is None or row[0] != reason

    def release(self, study_uid: str) -> bool:
        """The study reached the outbox: no longer held. True when it was held."""
        with self.outbox.transaction() as db:
            return db.execute("DELETE FROM dicom_quarantine WHERE study_uid = ?", (study_uid,)).rowcount > 0

    def count(self) -> int:
        return int(self.outbox.query("SELECT COUNT(*) FROM dicom_quarantine")[0][0])

    def studies(self, uids: list[str] | None = None) -> list[HeldStudy]:
        """The held studies (all, or these Study Instance UIDs), oldest first."""
        rows = self.outbox.query(
            "SELECT study_uid, source, reason, first_at, last_at, attempts, headers FROM dicom_quarantine "
            "ORDER BY first_at, study_uid"
        )
        wanted = set(uids) if uids else None
        return [
            HeldStudy(r[0], r[1], r[2], r[3], r[4], r[5], _instances(r[6]))
            for r in rows
            if wanted is None or r[0] in wanted
        ]


def _instances(headers: Any) -> list[InstanceFacts]:
    return [InstanceFacts.from_json(orjson.dumps(raw)) for raw in orjson.loads(bytes(headers))]
