"""The SVG chart geometry the pages draw (pure functions)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from registry.web.charts import bar_rows, nice_ticks, stacked_columns, trend_chart

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(finite, finite)
def test_ticks_cover_the_range_in_even_steps(a: float, b: float) -> None:
    low, high = min(a, b), max(a, b)
    ticks = nice_ticks(low, high)
    assert ticks[0] <= low + 1e-9
    assert ticks[-1] >= high - 1e-9 * max(1.0, high - low)
    steps = {round(y - x, 6) for x, y in itertools.pairwise(ticks)}
    assert len(steps) <= 2  # equal up to float rounding
    assert 2 <= len(ticks) <= 12


def test_trend_draws_one_dot_per_value_inside_the_plot_with_the_reference_band() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    points = [
        (start + timedelta(days=30 * i), v, org, f"{v}", v > 10)
        for i, (v, org) in enumerate([(4.2, "A"), (11.5, "B"), (6.0, "A"), (3.1, "B")])
    ]
    chart = trend_chart(points, 4.0, 10.0)
    assert len(chart.dots) == 4
    assert [d.abnormal for d in chart.dots] == [False, True, False, False]
    for d in chart.dots:
        assert chart.left <= d.x <= chart.width - chart.right
        assert chart.top <= d.y <= chart.height - chart.bottom
    # time runs left to right; a higher value is drawn higher (smaller y)
    assert chart.dots[0].x < chart.dots[1].x < chart.dots[2].x < chart.dots[3].x
    assert chart.dots[1].y < chart.dots[2].y < chart.dots[0].y
    assert chart.band is not None and chart.band.label == "4–10"
    assert chart.band.y < chart.dots[0].y < chart.band.y + chart.band.height + 0.5  # 4.2 lies in the band
    assert chart.legend == [("A", chart.dots[0].color), ("B", chart.dots[1].color)]
    assert chart.dots[0].color != chart.dots[1].color


def test_trend_of_one_value_and_of_none() -> None:
    one = trend_chart([(datetime(2026, 1, 1, tzinfo=UTC), 5.0, "A", "5", False)], None, None)
    assert len(one.dots) == 1 and one.band is None
    assert trend_chart([], 1.0, 2.0).dots == []


def test_trend_labels_every_point_with_its_date() -> None:
    start = datetime(2025, 12, 20, tzinfo=UTC)
    points = [(start + timedelta(days=7 * i), 5.0 + i, "A", "", False) for i in range(4)]
    chart = trend_chart(points, None, None)
    assert [t.label for t in chart.x_ticks] == ["2025-12-20", "12-27", "2026-01-03", "01-10"]
    assert [t.pos for t in chart.x_ticks] == [d.x for d in chart.dots]


def test_daily_columns_stack_recognitions_and_declines_and_draw_no_empty_boxes() -> None:
    series = [("recognized", "已互认"), ("declined", "不互认")]
    chart = stacked_columns([("2026-11-01", (2.0, 1.0)), ("2026-11-03", (4.0, 0.0))], series)
    assert chart.days == 3  # the day between is on the axis, with nothing drawn
    assert [(b.label, b.series) for b in chart.bars] == [
        ("2026-11-01", "recognized"), ("2026-11-01", "declined"), ("2026-11-03", "recognized")
    ]  # fmt: skip
    rec1, dec1, rec3 = chart.bars
    assert rec3.height == 2 * rec1.height and dec1.height * 2 == rec1.height
    assert dec1.y + dec1.height == rec1.y  # the decline sits on the recognitions of its day
    assert all(b.height > 0 for b in chart.bars)
    assert stacked_columns([], series).bars == []
    rows = bar_rows([("a", 1.0, "1"), ("b", 4.0, "4")])
    assert [r.fraction for r in rows] == [0.25, 1.0]
    assert [r.fraction for r in bar_rows([("rate", 0.5, "50%")], scale=1.0)] == [0.5]
    assert bar_rows([("none", 0.0, "0")])[0].fraction == 0.0
