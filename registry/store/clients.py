"""Principals that may obtain tokens (the ``client`` table) and small installation facts (``registry_state``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, insert, select, update

from registry.store.tables import metadata

C = cast(Any, metadata.tables["client"])
ST = cast(Any, metadata.tables["registry_state"])


class ClientStore:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def get(self, client_id: str) -> Any | None:
        return self.conn.execute(select(C).where(C.c.client_id == client_id)).first()

    def add(
        self,
        *,
        client_id: str,
        kind: str,
        name: str,
        secret_hash: str,
        scopes: str,
        org_id: str | None,
        patient_key: str | None,
        now: datetime,
    ) -> None:
        self.conn.execute(
            insert(C).values(
                client_id=client_id, kind=kind, name=name, secret_hash=secret_hash, scopes=scopes, org_id=org_id,
                patient_key=patient_key, created=now, disabled=False,
            )
        )  # fmt: skip

    def set_secret(self, client_id: str, secret_hash: str) -> None:
        self.conn.execute(update(C).where(C.c.client_id == client_id).values(secret_hash=secret_hash))

    def set_disabled(self, client_id: str, disabled: bool) -> None:
        self.conn.execute(update(C).where(C.c.client_id == client_id).values(disabled=disabled))

    def all(self) -> list[Any]:
        return list(self.conn.execute(select(C).order_by(C.c.kind, C.c.client_id)))

    def state(self, key: str) -> str | None:
        row = self.conn.execute(select(ST.c.value).where(ST.c.key == key)).first()
        return str(row.value) if row else None

    def set_state(self, key: str, value: str) -> None:
        if self.state(key) is None:
            self.conn.execute(insert(ST).values(key=key, value=value))
        else:
            self.conn.execute(update(ST).where(ST.c.key == key).values(value=value))
