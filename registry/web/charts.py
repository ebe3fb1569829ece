"""Server-rendered SVG chart geometry: the pages draw what these functions compute (no JavaScript, no chart
library), so a chart is in the HTML the browser receives, prints, and reads out to a screen reader as a table too."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

PALETTE = ("#1f5fae", "#c2410c", "#15803d", "#7e22ce", "#b45309", "#0e7490", "#be123c")
"""Distinguishable colours, each with at least 4.5:1 contrast on white (WCAG AA)."""


@dataclass(frozen=True, slots=True)
class Tick:
    pos: float
    label: str


@dataclass(frozen=True, slots=True)
class Dot:
    x: float
    y: float
    color: str
    title: str
    abnormal: bool


@dataclass(frozen=True, slots=True)
class Band:
    y: float
    height: float
    label: str


@dataclass
class LineChart:
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    dots: list[Dot] = field(default_factory=list)
    path: str = ""
    band: Band | None = None
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high] (1, 2, 2.5 or 5 times a power of ten apart)."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0]
    if high - low < 1e-6 * max(1.0, abs(low), abs(high)):  # one value (or a spread too small to show)
        high = low + max(abs(low) * 0.2, 1e-3)
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    start = math.floor(low / step) * step
    ticks: list[float] = []
    for i in range(50):
        value = start + i * step
        ticks.append(round(value, 10))
        if value >= high - step * 1e-12:
            break
    return ticks


def _fmt(value: float) -> str:
    return f"{value:g}"


def trend_chart(
    points: Sequence[tuple[datetime, float, str, str, bool]],
    low: float | None,
    high: float | None,
    *,
    width: int = 720,
    height: int = 340,
) -> LineChart:
    """A line through ``points`` (when, value, hospital, title, abnormal) over time, coloured by hospital, with the
    reference range ``[low, high]`` as a band."""
    chart = LineChart(width, height, left=104, right=24, top=16, bottom=92)  # room for the slanted dates
    if not points:
        return chart
    values = [p[1] for p in points] + [v for v in (low, high) if v is not None]
    ticks = nice_ticks(min(values), max(values))
    y0, y1 = ticks[0], ticks[-1] if ticks[-1] > ticks[0] else ticks[0] + 1
    t0, t1 = points[0][0].timestamp(), points[-1][0].timestamp()
    if t1 <= t0:
        t0, t1 = t0 - 86_400, t1 + 86_400
    plot_w = width - chart.left - chart.right
    plot_h = height - chart.top - chart.bottom

    def x_of(when: datetime) -> float:
        return round(chart.left + (when.timestamp() - t0) / (t1 - t0) * plot_w, 1)

    def y_of(value: float) -> float:
        return round(chart.top + (y1 - value) / (y1 - y0) * plot_h, 1)

    colors: dict[str, str] = {}
    for when, value, org, title, abnormal in points:
        color = colors.setdefault(org, PALETTE[len(colors) % len(PALETTE)])
        chart.dots.append(Dot(x_of(when), y_of(value), color, title, abnormal))
    chart.path = "M" + " L".join(f"{d.x},{d.y}" for d in chart.dots)
    chart.legend = list(colors.items())
    if low is not None or high is not None:
        top = y_of(min(high, y1)) if high is not None else chart.top
        bottom = y_of(max(low, y0)) if low is not None else chart.top + plot_h
        label = f"{'' if low is None else _fmt(low)}–{'' if high is None else _fmt(high)}"
        chart.band = Band(top, max(bottom - top, 1.0), label)
    chart.y_ticks = [Tick(y_of(t), _fmt(t)) for t in ticks]
    chart.x_ticks = point_labels([when for when, *_ in points], x_of)
    return chart


def point_labels(moments: Sequence[datetime], x_of: Callable[[datetime], float]) -> list[Tick]:
    """A date label under every point (the page draws them slanted, so close points keep theirs): the full date for
    the first point and at a change of year, the month and day otherwise."""
    out: list[Tick] = []
    year = None
    for when in moments:
        label = when.strftime("%Y-%m-%d") if when.year != year else when.strftime("%m-%d")
        year = when.year
        out.append(Tick(x_of(when), label))
    return out


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    value: str
    title: str
    series: str = ""


@dataclass
class BarChart:
    width: int
    height: int
    left: int
    bottom: int
    top: int
    bars: list[Bar] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    days: int = 0


def _every_day(rows: Sequence[tuple[str, Sequence[float]]]) -> list[tuple[str, Sequence[float]]]:
    """The rows with the days between them that have none (as zeros), so the axis is time; labels that are not
    ISO dates are kept as they are."""
    try:
        days = {date.fromisoformat(label): values for label, values in rows}
    except ValueError:
        return list(rows)
    if not days:
        return []
    first, last = min(days), max(days)
    zeros = [0.0] * len(rows[0][1])
    return [
        (d.isoformat(), days.get(d, zeros))
        for i in range((last - first).days + 1)
        if (d := first + timedelta(days=i)) is not None
    ]


def stacked_columns(
    rows: Sequence[tuple[str, Sequence[float]]],
    series: Sequence[tuple[str, str]],
    *,
    width: int = 720,
    height: int = 260,
) -> BarChart:
    """One column per day, its values (one per ``series``: key, name) stacked from the bottom — recognitions and
    declines per day. A zero draws nothing (no empty boxes); the days between two that have values are on the axis."""
    chart = BarChart(width, height, left=52, bottom=44, top=12)
    filled = _every_day(rows)
    if not filled:
        return chart
    chart.days = len(filled)
    ticks = nice_ticks(0.0, max(max(sum(v) for _, v in filled), 1.0))
    top_value = ticks[-1] or 1.0
    plot_w = width - chart.left - 8
    plot_h = height - chart.top - chart.bottom
    slot = plot_w / len(filled)
    bar_w = max(min(slot * 0.75, 40.0), 1.0)
    for i, (label, values) in enumerate(filled):
        x = round(chart.left + i * slot + (slot - bar_w) / 2, 1)
        base = 0.0
        for (key, name), value in zip(series, values, strict=True):
            if value <= 0:
                continue
            y_top = chart.top + plot_h - (base + value) / top_value * plot_h
            h = value / top_value * plot_h
            chart.bars.append(
                Bar(
                    x,
                    round(y_top, 1),
                    round(bar_w, 1),
                    round(h, 1),
                    label,
                    _fmt(value),
                    f"{label} {name}: {_fmt(value)}",
                    key,
                )
            )
            base += value
    chart.y_ticks = [Tick(round(chart.top + plot_h - t / top_value * plot_h, 1), _fmt(t)) for t in ticks]
    every = max(1, math.ceil(len(filled) / 8))
    chart.x_ticks = [
        Tick(round(chart.left + i * slot + slot / 2, 1), label[5:] if len(label) == 10 else label)
        for i, (label, _v) in enumerate(filled)
        if i % every == 0
    ]
    return chart


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    value: str
    fraction: float  # 0..1, the bar's length


def bar_rows(rows: Sequence[tuple[str, float, str]], *, scale: float | None = None) -> list[Row]:
    """Horizontal bars (label, value, shown text), scaled to ``scale`` or to the largest value."""
    top = scale if scale is not None else max((v for _, v, _ in rows), default=0.0)
    return [Row(label, text, (value / top) if top else 0.0) for label, value, text in rows]
