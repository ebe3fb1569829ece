"""Index values of a resource for its search parameters (FHIR R4 §search: token, string, date, reference).

Dates become ranges of UTC microseconds since the epoch, ``[low, high]`` both inclusive, at the precision written:
``2025-03`` covers the whole month. A date or dateTime without an offset is read in the region's time zone.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
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


def _tz(text: str | None, local: tzinfo) -> tzinfo:
    if text is None:
        return local
    if text == "Z":
        return UTC
    sign = 1 if text[0] == "+" else -1
    return timezone(sign * timedelta(hours=int(text[1:3]), minutes=int(text[4:6])))


def date_range(text: str, local: tzinfo) -> tuple[int, int]:
    """The instant range a FHIR date/dateTime/instant value covers, at its precision, in UTC microseconds."""
    m = _DATE_RE.match(text.strip())
    if m is None:
        raise DateFormatError(f"not a FHIR date or dateTime: {text!r}")
    g = m.groupdict()
    tz = _tz(g["tz"], local)
    try:
        year = int(g["y"])
        if g["m"] is None:
            start = datetime(year, 1, 1, tzinfo=tz)
            end = datetime(year + 1, 1, 1, tzinfo=tz)
        elif g["d"] is None:
            month = int(g["m"])
            start = datetime(year, month, 1, tzinfo=tz)
            end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz)
        elif g["H"] is None:
            start = datetime(year, int(g["m"]), int(g["d"]), tzinfo=tz)
            end = start + timedelta(days=1)
        elif g["S"] is None:
            start = datetime(year, int(g["m"]), int(g["d"]), int(g["H"]), int(g["M"]), tzinfo=tz)
            end = start + timedelta(minutes=1)
        else:
            frac = g["f"] or ""
            micro = int((frac + "000000")[:6]) if frac else 0
            start = datetime(year, int(g["m"]), int(g["d"]), int(g["H"]), int(g["M"]), int(g["S"]), micro, tzinfo=tz)
            end = start + (timedelta(microseconds=1) if len(frac) >= 6 else timedelta(seconds=10 ** -len(frac)))
    except ValueError as exc:
        raise DateFormatError(f"not a valid date: {text!r} ({exc})") from None
    return to_us(start), to_us(end) - 1


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
        yield date_range(value, local)
    elif isinstance(value, Mapping) and ("start" in value or "end" in value):  # Period
        low = date_range(value["start"], local)[0] if isinstance(value.get("start"), str) else MIN_US
        high = date_range(value["end"], local)[1] if isinstance(value.get("end"), str) else MAX_US
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


def references(resource: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Reference object in the resource with its dotted path (for resolving and checking references)."""

    def walk(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        if isinstance(node, dict):
            if isinstance(node.get("reference"), str) and path:
                yield path, node
            for key, value in node.items():
                if key in ("contained", "text"):
                    continue
                yield from walk(value, f"{path}.{key}" if path else key)
        elif isinstance(node, list):
            for element in node:
                yield from walk(element, path)

    yield from walk(resource, "")
