"""Principals that may obtain tokens (the ``client`` table), the client assertions seen (``client_assertion``) and
small installation facts (``registry_state``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from registry.store.tables import metadata

C = cast(Any, metadata.tables["client"])
ST = cast(Any, metadata.tables["registry_state"])
CA = cast(Any, metadata.tables["client_assertion"])


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
        tokens_valid_after: int,
    ) -> None:
        self.conn.execute(
            insert(C).values(
                client_id=client_id, kind=kind, name=name, secret_hash=secret_hash, scopes=scopes, org_id=org_id,
                patient_key=patient_key, created=now, disabled=False, tokens_valid_after=tokens_valid_after,
            )
        )  # fmt: skip

    def set_secret(self, client_id: str, secret_hash: str, *, tokens_valid_after: int) -> bool:
        """A new secret; tokens issued up to ``tokens_valid_after`` (Unix seconds) stop working. False: no client."""
        values = {"secret_hash": secret_hash, "tokens_valid_after": tokens_valid_after}
        return self._update(client_id, values)

    def set_disabled(self, client_id: str, disabled: bool, *, tokens_valid_after: int | None = None) -> bool:
        values: dict[str, Any] = {"disabled": disabled}
        if tokens_valid_after is not None:
            values["tokens_valid_after"] = tokens_valid_after
        return self._update(client_id, values)

    def set_jwks(self, client_id: str, jwks: str | None) -> bool:
        """The client's public JWK Set (JSON text), or None to remove it. False: no such client."""
        return self._update(client_id, {"jwks": jwks})

    def use_assertion(self, client_id: str, jti: str, *, expires_us: int, now_us: int) -> bool:
        """Record an assertion's ``jti`` until it expires; False when it was seen before (a replay). Expired rows are
        dropped first, so the table holds only assertions that could still be presented."""
        self.conn.execute(delete(CA).where(CA.c.expires_us < now_us))
        try:
            with self.conn.begin_nested():
                self.conn.execute(insert(CA).values(client_id=client_id, jti=jti, expires_us=expires_us))
        except IntegrityError:
            return False
        return True

    def remove(self, client_id: str) -> bool:
        """Delete the client; audit rows name clients by id as text, so the trail stays whole."""
        return self.conn.execute(delete(C).where(C.c.client_id == client_id)).rowcount > 0

    def _update(self, client_id: str, values: dict[str, Any]) -> bool:
        return self.conn.execute(update(C).where(C.c.client_id == client_id).values(**values)).rowcount > 0

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
