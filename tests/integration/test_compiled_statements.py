"""The order check's statements run through the driver (registry.store.compiled) on both stores: the same rows as the
Core expression they are compiled from, and the check log written whole or not at all."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, func, select, text
from sqlalchemy.exc import IntegrityError

from registry.fhir.extract import to_us
from registry.store.db import make_engine
from registry.store.migrate import upgrade
from registry.store.recognition import AUD, CARD, CHECK, RIX, RecognitionStore
from tests.integration.conftest import Api, Database, resident_id, unique

NOW = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def engine(database: Database) -> Iterator[Engine]:
    upgrade(database.url)
    engine = make_engine(database.url)
    yield engine
    engine.dispose()


def _index_row(n: int, key: str, item: str, days_ago: int) -> dict[str, object]:
    return {"patient_key": key, "item_id": item, "effective_us": to_us(NOW - timedelta(days=days_ago)),
            "org_id": "hosp-a", "status": "final", "hr_mark": "HR", "res_type": "Observation", "res_id": f"o{n}",
            "res_pk": 10_000 + n, "report_id": "r1" if n % 2 else None, "value_text": f"{n} mmol/L"}  # fmt: skip


def test_results_for_gives_the_rows_of_the_core_query_newest_first(engine: Engine) -> None:
    key = f"k-results-{engine.dialect.name}"
    rows = [_index_row(n, key, item, days) for n, (item, days) in
            enumerate([("glu", 3), ("alt", 1), ("glu", 40), ("ast", 2), ("glu", 400)])]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(RIX.insert(), rows)
    since = to_us(NOW - timedelta(days=100))
    with engine.begin() as conn:
        got = RecognitionStore(conn).results_for(key, ["glu", "alt"], since)
        expected = conn.execute(
            select(RIX).where(RIX.c.patient_key == key, RIX.c.item_id.in_(["glu", "alt"]),
                              RIX.c.effective_us >= since).order_by(RIX.c.effective_us.desc())
        ).all()  # fmt: skip
        members = RecognitionStore(conn).report_members(key, ["r1"])
    assert [(r.item_id, r.res_id, r.effective_us) for r in got] == [
        (r.item_id, r.res_id, r.effective_us) for r in expected
    ]
    assert [r.res_id for r in got] == ["o1", "o0", "o2"]  # alt 1 day ago, glu 3 days, glu 40 days; 400 days is out
    assert {r.res_id for r in members} == {"o1", "o3"} and all(r.report_id == "r1" for r in members)
    with engine.begin() as conn:
        assert RecognitionStore(conn).results_for(key, [], since) == []
        assert RecognitionStore(conn).results_for(key, ["nope"], since) == []


def _log(n: int, card: str) -> tuple[list[dict[str, object]], list[dict[str, object]], list[dict[str, object]]]:
    check = {"checked": NOW, "checked_us": to_us(NOW), "source": "order-sign", "hook_instance": f"h{n}",
             "order_key": f"hosp-b|k|ServiceRequest/{n}|glu", "client_id": "dr", "ordering_org": "hosp-b",
             "patient_key": "k-log", "item_id": "glu", "kind": "lab", "status": "recognizable",
             "issuer_org": "hosp-a", "card_uuid": card, "sharing_paused": False}  # fmt: skip
    card_row = {"uuid": card, "issued": NOW, "source": "order-sign", "client_id": "dr", "ordering_org": "hosp-b",
                "patient_key": "k-log", "order_ref": f"ServiceRequest/{n}", "item_id": "glu",
                "status": "recognizable", "result_ref": "Observation/o1", "issuer_org": "hosp-a",
                "suggestion_uuid": f"s-{card}"}  # fmt: skip
    audit = {"recorded": NOW, "recorded_us": to_us(NOW), "request_id": f"req-{n}", "action": "E",
             "interaction": "operation", "outcome": "0", "status": 200, "client_id": "dr", "patient_key": "k-log",
             "detail": "order check (local)"}  # fmt: skip
    return [check], [card_row], [audit]


def _counts(engine: Engine) -> tuple[int, int, int]:
    with engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(select(func.count()).select_from(t).where(t.c.patient_key == "k-log")).scalar_one()
            for t in (CHECK, CARD, AUD)
        )


def test_the_check_log_is_written_whole_or_not_at_all(engine: Engine) -> None:
    before = _counts(engine)
    with engine.begin() as conn:
        RecognitionStore(conn).add_check_log(*_log(1, "card-1"))
    assert _counts(engine) == (before[0] + 1, before[1] + 1, before[2] + 1)
    # a second log whose card repeats a uuid: the card fails, and the check row and audit row sent before and
    # after it in the same round trip are not kept either
    with pytest.raises(IntegrityError), engine.begin() as conn:
        RecognitionStore(conn).add_check_log(*_log(2, "card-1"))
    assert _counts(engine) == (before[0] + 1, before[1] + 1, before[2] + 1)
    with engine.connect() as conn:  # and the connection went back to the pool usable
        assert conn.execute(text("SELECT 1")).scalar_one() == 1


def _on_a_dropped_connection(engine: Engine, call: Callable[[Connection], object]) -> None:
    """Run ``call`` on a connection whose server process was terminated; it raises SQLAlchemy's OperationalError and
    leaves the connection invalidated, and the next connection from the pool is a new one, in its default mode."""
    from sqlalchemy.exc import OperationalError

    with engine.connect() as victim:
        pid = victim.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        victim.rollback()
        with engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        with pytest.raises(OperationalError):
            call(victim)
        assert victim.invalidated
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one() != pid
        assert conn.connection.driver_connection.autocommit is False


def test_a_dropped_connection_raises_what_sqlalchemy_raises_and_is_not_reused(engine: Engine) -> None:
    """A statement run through the driver on a connection the server dropped fails as SQLAlchemy's
    OperationalError (the registry answers 503 for it), and the connection is invalidated, not pooled again."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite statements go through SQLAlchemy itself; there is no server to drop the connection")
    from registry.store.check_reads import CheckAsk
    from registry.store.config_generation import ConfigGenerations

    _on_a_dropped_connection(engine, lambda conn: ConfigGenerations(conn).current())
    # the same for the first reads sent together before the transaction has begun (all_together)
    _on_a_dropped_connection(engine, lambda conn: CheckAsk("k-gone", "hosp-a", ("glu",), 0, ("hiv",)).read(conn))


def test_the_write_path_plans_each_statement_and_the_rest_keep_postgresql_s_plan_cache(
    api: Api, database: Database
) -> None:
    """registry.store.db: the ingest's transactions plan every execution (a generic plan made on a small table once
    stayed in use as it grew); every other transaction keeps PostgreSQL's default, so the order check's prepared
    statements are planned once per connection."""
    if database.backend != "postgresql":
        pytest.skip("plan caching is PostgreSQL's; SQLite plans every statement")
    seen: list[tuple[str, str]] = []

    def observe(conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "SELECT")):
            mode = conn.connection.driver_connection.execute("SHOW plan_cache_mode").fetchone()[0]
            seen.append((statement.split()[0].upper(), mode))

    engine = api.ctx.engine
    event.listen(engine, "before_cursor_execute", observe)
    try:
        api.patient("hosp-a", unique("PLAN"), resident_id(9601))
    finally:
        event.remove(engine, "before_cursor_execute", observe)
    writes = [mode for kind, mode in seen if kind in ("INSERT", "UPDATE")]
    assert writes and set(writes) == {"force_custom_plan"}, seen
    with engine.connect() as conn:  # SET LOCAL ended with the ingest's transaction: the pooled connections are default
        modes = {conn.exec_driver_sql("SHOW plan_cache_mode").scalar_one()}
    with api.ctx.uow.begin() as repo:
        modes.add(repo.conn.exec_driver_sql("SHOW plan_cache_mode").scalar_one())
    assert modes == {"auto"}
