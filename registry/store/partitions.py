"""Hash partitioning by patient on PostgreSQL (docs/deploy.md "Partitioning and Citus"): the hottest patient-scoped
tables are declared ``PARTITION BY HASH (patient_key)`` with :data:`PARTITIONS` partitions, so every hot query —
which filters on ``patient_key`` — touches one partition, and a region that outgrows one primary can distribute the
same tables by the same column (Citus) without changing a query. SQLite keeps plain tables.

A partitioned table's primary key must hold the partition key: ``(pk, patient_key)`` (``(uuid, patient_key)`` for
the cards) in the database, while the models keep ``pk`` alone (it is unique on its own: one sequence for all
partitions; Alembic does not compare primary keys). Its unique keys must hold it too, and the models say so
(``uq_decision_card``: one decision per card, the card's patient copied into it).
"""

from __future__ import annotations

import re

PARTITIONS = 8
PARTITIONED: dict[str, str] = {  # table: the migration that partitioned it
    "result_index": "0014",  # primary key (pk) became (pk, patient_key)
    "order_check": "0014",  # the same
    "share_restriction": "0015",  # primary keys that hold patient_key already
    "sensitive_share": "0015",
    "notification_preference": "0015",
    "recognition_card": "0016",  # primary key (uuid) became (uuid, patient_key)
    "reminder_card": "0016",
    "decision": "0016",  # primary key (pk, patient_key); one per card: UNIQUE (card_uuid, patient_key)
    "reminder_feedback": "0016",  # the same, with its card's patient_key added
}
_PARTITION_NAME = re.compile(r"^(?P<table>[a-z_]+)_p\d+$")


def partition_names(table: str) -> list[str]:
    return [f"{table}_p{n}" for n in range(PARTITIONS)]


def is_partition(name: str | None) -> bool:
    """Whether ``name`` is one partition of a partitioned table (not a table of the models of its own)."""
    match = _PARTITION_NAME.match(name or "")
    return bool(match and match.group("table") in PARTITIONED)


def include_name(name: str | None, type_: str, _parent: object) -> bool:
    """Alembic's ``include_name`` hook: the partitions and their indexes are the parent's, not tables of their own."""
    if type_ == "table":
        return not is_partition(name)
    if type_ == "index":
        return not re.match(r"^[a-z_]+_p\d+_", name or "")
    return True
