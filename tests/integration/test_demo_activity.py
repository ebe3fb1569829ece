"""The demo region's months of order checks and decisions (registry.services.demo.activity): through the real order
check and decisions, relative to the demo's ``now`` (a fixed instant here, never the wall clock), seeded, so the
statistics page has a picture on first start: recognitions and declines on many days, every reason, duplicates,
break-glass. And its imaging studies are exactly what the demo's local PACS is filled with (``demo_studies``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from registry.app import create_app
from registry.auth import Principal, PrincipalKind, parse_scopes
from registry.services.audit import AuditContext
from registry.services.demo import DemoActivity, DemoRegion, demo_studies
from registry.services.stats import Period
from tests.integration.conftest import make_settings

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
ADMIN = Principal("demo-test", PrincipalKind.ADMIN, parse_scopes("system/*.*"), name="test")


def test_the_demo_comes_with_months_of_decisions_with_every_reason(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, f"sqlite:///{tmp_path / 'demo.sqlite3'}"), clock=lambda: NOW)
    ctx = app.state.ctx
    try:
        region = DemoRegion(ctx.ingest, ctx.catalog, lambda: NOW, administration=ctx.administration,
                            namespaces=ctx.namespaces)  # fmt: skip
        region.load(ADMIN, patients=30)
        activity = DemoActivity(ctx.uow, ctx.catalog, ctx.identity, ctx.indexer)
        counts = activity.run(region.people(30), NOW, ctx.local_tz, days=150)
        assert counts["recognized"] > 0 and counts["declined"] >= 10 and counts["duplicates"] > 0, counts

        s = ctx.statistics.summary(ADMIN, Period(None, None))
        assert s["recognized"] == counts["recognized"] and s["declined"] == counts["declined"]
        assert all(r["count"] > 0 for r in s["declined_by_reason"]), s["declined_by_reason"]
        assert s["duplicates_avoided"] + s["duplicates_declined"] == counts["duplicates"]
        assert s["break_glass_accesses"] == counts["break_glass"] > 0
        days = [datetime.fromisoformat(d["day"]).date() for d in s["by_day"] if d["recognized"] or d["declined"]]
        local_now = NOW.astimezone(ctx.local_tz).date()
        assert min(days) >= local_now - timedelta(days=150) and max(days) <= local_now
        assert (max(days) - min(days)).days >= 60 and len(days) >= 20  # months of them, on many days
        assert len(ctx.catalog.items) and s["patients_benefited"] > 0

        # the studies the local PACS holds are the ones loaded: same UIDs, series and sizes (whatever the PACS's now)
        found = orjson.loads(ctx.reads.search(ADMIN, AuditContext("t", ADMIN, "search-type"), "ImagingStudy",
                                              [("_count", "500")]).body)  # fmt: skip
        loaded = {
            next(i["value"] for i in r["identifier"] if i["system"] == "urn:dicom:uid").removeprefix("urn:oid:"): r
            for r in (e["resource"] for e in found["entry"])
        }
        planned = demo_studies(ctx.catalog, NOW + timedelta(days=3), patients=30)
        assert {p.uid for p in planned} == set(loaded) and len(planned) > 10
        for p in planned:
            stored = loaded[p.uid]
            assert [(s.uid, s.instances) for s in p.series] == [
                (s["uid"], s["numberOfInstances"]) for s in stored["series"]
            ]
            assert stored["numberOfInstances"] == p.instances

        # seeded: the same region and now give the same decisions
        again = DemoActivity(ctx.uow, ctx.catalog, ctx.identity, ctx.indexer).run(
            region.people(30), NOW, ctx.local_tz, days=150
        )
        assert again == counts
    finally:
        ctx.engine.dispose()
