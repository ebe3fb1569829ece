"""Index values of a resource for its search parameters (FHIR R4 §search: token, string, date, reference).

Dates become ranges of UTC microseconds since the epoch, ``[low, high]`` both inclusive, at the precision written:
``2025-03`` covers the whole month. A date or dateTime without an offset is read in the region's time zone.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from registry.fhir.search_params import SEARCH_PARAMS, ParamType, SearchParam

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_US = -(2**62)
MAX_US = 2**62

_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


class DateFormatError(ValueError):
    pass


def to_us(moment: datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


_DAY_US = 86_400_000_000
_ORDINAL_EPOCH = EPOCH.date().toordinal()
MAX_OFFSET_MINUTES = 14 * 60
"""FHIR R4 datatypes §2.24.0.7 (dateTime, instant): a time-zone offset lies between -14:00 and +14:00."""

HELD_LOW_US = (datetime(1, 1, 2, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
HELD_HIGH_US = (datetime(9999, 12, 30, 23, 59, 59, 999_999, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)
"""The instants the registry holds: 0001-01-02T00:00:00Z to 9999-12-30T23:59:59.999999Z — a day inside what a
datetime can hold, so every held instant can be shown in any time zone (±14:00) without overflowing."""


def _offset_minutes(text: str) -> int:
    if text == "Z":
        return 0
    hours, minutes = int(text[1:3]), int(text[4:6])
    total = hours * 60 + minutes
    if minutes > 59 or total > MAX_OFFSET_MINUTES:
        raise DateFormatError(f"time-zone offset {text} is out of range (from -14:00 to +14:00)")
    return total if text[0] == "+" else -total


def _local_offset_us(local: tzinfo, wall: datetime) -> int:
    offset = local.utcoffset(wall)
    return 0 if offset is None else offset // timedelta(microseconds=1)


def _wall_us(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> int:
    """Microseconds from 1970-01-01T00:00 to this wall-clock time, as if it were UTC (no datetime arithmetic, so
    nothing overflows at the ends of the calendar)."""
    days = date(year, month, day).toordinal() - _ORDINAL_EPOCH
    return ((days * 86_400 + hour * 3_600 + minute * 60 + second) * 1_000_000) + micro


def date_range(text: str, local: tzinfo) -> tuple[int, int]:
    """The instant range a FHIR date/dateTime/instant value covers, at its precision, in UTC microseconds (FHIR R4
    search §3.1.1.4.6: a value stands for the range its precision covers). A value without an offset is read in
    ``local``. The range may lie outside the instants the registry holds (:func:`held_range` checks that)."""
    m = _DATE_RE.match(text.strip())
    if m is None:
        raise DateFormatError(f"not a FHIR date or dateTime: {text!r}")
    g = m.groupdict()
    offset_us = None if g["tz"] is None else _offset_minutes(g["tz"]) * 60_000_000
    wall: tuple[int, ...]
    try:
        year = int(g["y"])
        if g["m"] is None:
            wall, span = (year, 1, 1), (366 if calendar.isleap(year) else 365) * _DAY_US
        elif g["d"] is None:
            month = int(g["m"])
            wall, span = (year, month, 1), calendar.monthrange(year, month)[1] * _DAY_US
        elif g["H"] is None:
            wall, span = (year, int(g["m"]), int(g["d"])), _DAY_US
        elif g["S"] is None:
            wall, span = (year, int(g["m"]), int(g["d"]), int(g["H"]), int(g["M"])), 60_000_000
        else:
            frac = g["f"] or ""
            micro = int((frac + "000000")[:6]) if frac else 0
            wall = (year, int(g["m"]), int(g["d"]), int(g["H"]), int(g["M"]), int(g["S"]), micro)
            span = 1 if len(frac) >= 6 else 10 ** (6 - len(frac))
        start = datetime(*wall)  # noqa: DTZ001 - a wall-clock time, its offset applied below
        low_wall = _wall_us(*wall)
    except ValueError as exc:
        raise DateFormatError(f"not a valid date: {text!r} ({exc})") from None
    high_wall = low_wall + span - 1
    if offset_us is not None:
        return low_wall - offset_us, high_wall - offset_us
    try:
        end = start + timedelta(microseconds=span - 1)
    except OverflowError:  # the last year of the calendar: its offset at the start will do
        end = start
    return low_wall - _local_offset_us(local, start), high_wall - _local_offset_us(local, end)


class DateRangeError(DateFormatError):
    """A well-formed date the registry cannot hold (before 0001-01-02 or after 9999-12-30, UTC)."""


def held_range(text: str, local: tzinfo) -> tuple[int, int]:
    """:func:`date_range`, refusing a range outside the instants the registry holds (``HELD_LOW_US``…)."""
    low, high = date_range(text, local)
    if low < HELD_LOW_US or high > HELD_HIGH_US:
        raise DateRangeError(f"{text!r} lies outside the instants this registry holds (0001-01-02 to 9999-12-30, UTC)")
    return low, high


# a dateTime or instant with a time of day (a date alone is checked where it is indexed)
INSTANT_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2})$")


def clamp_to_held(us: int) -> int:
    """A search bound kept within a day of the held range: it compares with every held value as it did unclamped."""
    return min(max(us, HELD_LOW_US - _DAY_US), HELD_HIGH_US + _DAY_US)


def normalize_string(text: str) -> str:
    """FHIR string matching is case- and accent-insensitive: NFKD, drop combining marks, casefold, squeeze spaces."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


def parse_reference(ref: str, base_url: str | None = None) -> tuple[str, str] | None:
    """``Type/id`` (also ``Type/id/_history/v`` or an absolute URL under our base) → (Type, id); else None."""
    if base_url and ref.startswith(base_url + "/"):
        ref = ref[len(base_url) + 1 :]
    parts = ref.split("/")
    if len(parts) in (2, 4) and parts[0][:1].isupper() and parts[1] and (len(parts) == 2 or parts[2] == "_history"):
        return parts[0], parts[1]
    return None


# ---------------------------------------------------------------------------- walking element paths
def _step(node: Any, name: str) -> Iterator[Any]:
    if isinstance(node, list):
        for element in node:
            yield from _step(element, name)
        return
    if not isinstance(node, Mapping):
        return
    if name.endswith("[x]"):
        prefix = name[:-3]
        for key, value in node.items():
            if key.startswith(prefix) and key[len(prefix) : len(prefix) + 1].isupper():
                yield value
        return
    if name in node:
        yield node[name]


def values_at(resource: Mapping[str, Any], path: str) -> Iterator[Any]:
    nodes: list[Any] = [resource]
    for name in path.split("."):
        nodes = [value for node in nodes for value in _step(node, name)]
    for node in nodes:
        if isinstance(node, list):
            yield from node
        else:
            yield node


# ---------------------------------------------------------------------------- index values
@dataclass(slots=True)
class IndexValues:
    tokens: set[tuple[str, str, str]] = field(default_factory=set)  # (param, system, code)
    strings: set[tuple[str, str, str]] = field(default_factory=set)  # (param, normalized, exact)
    dates: set[tuple[str, int, int]] = field(default_factory=set)  # (param, low, high)
    references: set[tuple[str, str, str]] = field(default_factory=set)  # (param, type, id)


def _tokens(value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, bool):
        yield "", "true" if value else "false"
    elif isinstance(value, str):
        yield "", value
    elif isinstance(value, Mapping):
        if "coding" in value:
            for coding in value.get("coding") or []:
                if isinstance(coding, Mapping) and isinstance(coding.get("code"), str):
                    yield str(coding.get("system") or ""), coding["code"]
        elif isinstance(value.get("code"), str):
            yield str(value.get("system") or ""), value["code"]
        elif isinstance(value.get("value"), str):  # Identifier
            yield str(value.get("system") or ""), value["value"]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):  # HumanName
        for key in ("text", "family"):
            if isinstance(value.get(key), str):
                yield value[key]
        for key in ("given", "prefix", "suffix"):
            for part in value.get(key) or []:
                if isinstance(part, str):
                    yield part
        family, given = value.get("family"), value.get("given") or []
        if isinstance(family, str) and given and all(isinstance(g, str) for g in given):
            yield family + "".join(given)  # Chinese order: 张 + 三 → 张三


def _dates(value: Any, local: tzinfo) -> Iterator[tuple[int, int]]:
    if isinstance(value, str):
        yield held_range(value, local)
    elif isinstance(value, Mapping) and ("start" in value or "end" in value):  # Period
        low = held_range(value["start"], local)[0] if isinstance(value.get("start"), str) else MIN_US
        high = held_range(value["end"], local)[1] if isinstance(value.get("end"), str) else MAX_US
        yield low, high


def extract(resource: Mapping[str, Any], local: tzinfo, base_url: str | None = None) -> IndexValues:
    """Every index value of ``resource`` for its type's search parameters (``_id``/``_lastUpdated`` excluded)."""
    out = IndexValues()
    params: Mapping[str, SearchParam] = SEARCH_PARAMS.get(str(resource.get("resourceType")), {})
    for param in params.values():
        if param.name.startswith("_"):
            continue
        _extract_param(resource, param, local, base_url, out)
    return out


def _extract_param(
    resource: Mapping[str, Any], param: SearchParam, local: tzinfo, base_url: str | None, out: IndexValues
) -> None:
    for path in param.paths:
        for value in values_at(resource, path):
            if param.type is ParamType.TOKEN:
                out.tokens.update((param.name, s, c) for s, c in _tokens(value))
            elif param.type is ParamType.STRING:
                out.strings.update((param.name, normalize_string(s), s) for s in _strings(value) if s.strip())
            elif param.type is ParamType.DATE:
                out.dates.update((param.name, lo, hi) for lo, hi in _dates(value, local))
            elif isinstance(value, Mapping) and isinstance(value.get("reference"), str):
                parsed = parse_reference(value["reference"], base_url)
                if parsed and (not param.targets or parsed[0] in param.targets):
                    out.references.add((param.name, parsed[0], parsed[1]))
