"""The order check's round trips to PostgreSQL, counted in the wire protocol itself (libpq's trace of every pooled
connection the call uses): its first reads — configuration generation, care context, the patient's index rows for
the ordered items, their sharing projection, the sensitive reports and a panel's members — go in one round trip, and
the check log, cards and audit rows with their commit in one more; no BEGIN or COMMIT of their own. SQLite has no
wire to count."""

# ruff: noqa: F811 - the fixtures of test_recognition are imported by name and used as parameters

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from psycopg import pq
from sqlalchemy import Engine, event, text

from registry.store.compiled import _row_counts
from tests.integration.conftest import Api, Database, unique
from tests.integration.test_recognition import (  # noqa: F401 - the module's fixtures
    ORDERS,
    T0,
    api,
    card_for,
    clock,
    person,
    push_cbc,
    sign,
)


@contextmanager
def wire(engine: Engine) -> Iterator[list[str]]:
    """The client's protocol messages on every connection checked out meanwhile (one line each)."""
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="hr-wire-") as tmp:
        files: dict[int, Any] = {}

        def checkout(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
            f = open(Path(tmp) / f"{len(files)}.trace", "w")  # noqa: SIM115 - closed at check-in
            files[id(dbapi_conn)] = f
            dbapi_conn.pgconn.trace(f.fileno())
            dbapi_conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

        def checkin(dbapi_conn: Any, _record: Any) -> None:
            f = files.pop(id(dbapi_conn), None)
            if f is not None:
                dbapi_conn.pgconn.untrace()
                f.close()

        event.listen(engine, "checkout", checkout)
        event.listen(engine, "checkin", checkin)
        try:
            yield lines
        finally:
            event.remove(engine, "checkout", checkout)
            event.remove(engine, "checkin", checkin)
        for path in sorted(Path(tmp).glob("*.trace")):
            lines.extend(line for line in path.read_text().splitlines() if line.startswith("F\t"))


def round_trips(lines: list[str]) -> list[str]:
    """Each Sync of the extended protocol and each simple Query waits for the server's ReadyForQuery."""
    return [line for line in lines if line.split("\t")[2].split(" ")[0] in ("Sync", "Query")]


def test_a_warmed_order_check_is_two_round_trips(
    api: Api, person: dict[str, Any], clock: Any, database: Database
) -> None:
    if database.backend != "postgresql":
        pytest.skip("SQLite runs in the process: no round trips to count")
    clock.now = T0
    push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", unique("R"))
    sign(api, "dr-hosp-b", person["nid"], ORDERS)  # the code map, organizations and qualifications cached
    with wire(api.ctx.engine) as lines:
        response = sign(api, "dr-hosp-b", person["nid"], ORDERS)
    cbc = card_for(response, "o-cbc")
    assert cbc is not None and "| 血红蛋白 | 131 g/L |" in cbc["detail"]  # the panel's values: its report's members
    trips = round_trips(lines)
    # the first reads (with the panel's members and the sensitive reports); the log, cards and audit, committed
    assert len(trips) == 2, "\n".join(lines)
    assert not any("BEGIN" in line or "COMMIT" in line for line in lines), "\n".join(lines)
    # the second: multi-row INSERTs — the log's rows (one per order), the cards, the audit — not one a row
    written = [line for line in lines[lines.index(trips[0]) + 1 :] if line.split("\t")[2].startswith("Execute")]
    cards = len(response["cards"])
    assert len(written) == len(_row_counts(len(ORDERS))) + len(_row_counts(cards)) + 1, "\n".join(lines)


def test_a_check_of_many_orders_logs_every_one(
    api: Api, person: dict[str, Any], clock: Any, database: Database
) -> None:
    """More orders than one INSERT takes rows (256): the log holds each, the answer a card for each answered one."""
    clock.now = T0
    push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", unique("R"))
    orders = [(f"o-{n}", *ORDERS[n % len(ORDERS)][1:]) for n in range(1200)]
    hook = unique("hook")
    response = sign(api, "dr-hosp-b", person["nid"], orders, hookInstance=hook)
    assert len(response["cards"]) == 400  # every third order is the blood count
    with api.ctx.engine.connect() as conn:
        logged = conn.execute(text("SELECT count(*) FROM order_check WHERE hook_instance = :h"), {"h": hook})
        assert logged.scalar_one() == 1200
