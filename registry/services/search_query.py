"""Parsing FHIR search parameters (FHIR R4 §search) into a store :class:`Query`.

Supported: token (``code``, ``system|code``, ``|code``, ``system|``; ``:not``, ``:missing``), string (prefix;
``:exact``, ``:contains``), date with every prefix (eq ne gt lt ge le sa eb ap) at any precision, reference
(``Type/id``, ``id``, absolute URL under this server), one level of chaining (``patient.identifier``,
``subject:Patient.name``…), comma = OR, repetition = AND; ``_id``, ``_lastUpdated``, ``_count``, ``_sort``,
``_include``, ``_revinclude``, ``_summary`` (``count``; ``true``, ``text``, ``data``, ``false`` and ``_elements`` in
registry.fhir.subsetting), ``_total``.

Errors (FHIR R4 search.html §3.1.1.4 "Handling Errors"): an *unknown or unsupported parameter* is ignored by default
(``lenient``: reported in an OperationOutcome entry, left out of the ``self`` link) and refused with 400 under
``Prefer: handling=strict``. A *modifier* this server does not support on a parameter it knows (``name:foo``,
``_include:iterate``) is always 400: ignoring it would answer a different question than the one asked
(search.html §3.1.1.5: servers SHALL reject a search with an unsupported modifier). A value that does not parse
(``date=yesterday``) is always 400 too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from registry.errors import BadRequestError, TooCostlyError
from registry.fhir.extract import (
    DateFormatError,
    clamp_to_held,
    date_range,
    normalize_string,
    parse_reference,
    to_us,
)
from registry.fhir.integers import whole_number
from registry.fhir.search_params import INCLUDES, REVINCLUDES, SEARCH_PARAMS, SORTABLE, ParamType, SearchParam
from registry.fhir.subsetting import Subset, SubsetError
from registry.services.identity import IdentityPolicy, NationalIdError
from registry.store.query import (
    ChainClause,
    Clause,
    DateClause,
    DateValue,
    IdClause,
    LastUpdatedClause,
    MissingClause,
    PatientKeyClause,
    Query,
    ReferenceClause,
    SortKey,
    StringClause,
    TokenClause,
    TokenValue,
    decode_cursor,
    encode_cursor,
)

CONTROL = frozenset(
    {"_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_format", "_pretty", "_cursor"}
)
_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_SPLIT = re.compile(r"(?<!\\),")
_DAY_US = 86_400_000_000


@dataclass(frozen=True, slots=True)
class SearchLimits:
    """What one search may ask at most (``REGISTRY_SEARCH_MAX_*``): each parameter and each OR-ed value is a
    predicate the database must evaluate, so a search past these is refused before any SQL runs."""

    max_params: int = 40
    max_values: int = 100
    max_length: int = 8192

    def check(self, params: Sequence[tuple[str, str]]) -> None:
        """Refuse with 400 ``too-costly`` naming the limit and its setting."""
        if len(params) > self.max_params:
            raise TooCostlyError(
                f"the search has {len(params)} parameters; at most {self.max_params} are accepted "
                "(REGISTRY_SEARCH_MAX_PARAMS)"
            )
        length = sum(len(name) + len(value) + 2 for name, value in params)
        if length > self.max_length:
            raise TooCostlyError(
                f"the search's parameters are {length} characters long; at most {self.max_length} are accepted "
                "(REGISTRY_SEARCH_MAX_LENGTH)"
            )
        for name, value in params:
            count = len(_SPLIT.split(value))
            if count > self.max_values:
                raise TooCostlyError(
                    f"{name[:60]} has {count} comma-separated values; at most {self.max_values} are accepted "
                    "(REGISTRY_SEARCH_MAX_VALUES)"
                )


class UnknownParameterError(BadRequestError):
    """A parameter this server does not know or support: ignored unless the client asked for strict handling."""


class UnsupportedModifierError(BadRequestError):
    """A modifier this server does not support on a parameter it knows: refused whatever the handling."""


@dataclass(slots=True)
class ParsedSearch:
    query: Query
    includes: list[tuple[str, str]] = field(default_factory=list)  # (source type, reference param)
    revincludes: list[tuple[str, str]] = field(default_factory=list)  # (referring type, its reference param)
    summary_count: bool = False
    total: bool = False
    ignored: list[str] = field(default_factory=list)
    self_params: list[tuple[str, str]] = field(default_factory=list)
    subset: Subset | None = None  # _summary=true|text|data or _elements


def _sort_signature(rtype: str, sort: Sequence[SortKey]) -> str:
    return rtype + ":" + ",".join(("-" if k.descending else "") + k.param for k in sort)


def _values(raw: str) -> list[str]:
    return [v.replace("\\,", ",") for v in _SPLIT.split(raw)]


class SearchParser:
    def __init__(
        self,
        identity: IdentityPolicy,
        local_tz: tzinfo,
        base_url: str,
        *,
        now: datetime,
        cursor_key: bytes = b"",
        limits: SearchLimits | None = None,
    ) -> None:
        self.limits = limits or SearchLimits()
        self.identity = identity
        self.local_tz = local_tz
        self.base_url = base_url
        self.now = now
        self.cursor_key = cursor_key

    # ------------------------------------------------------------------ paging cursors
    def make_cursor(self, rtype: str, sort: Sequence[SortKey], values: Sequence[object], snapshot: int) -> str:
        """An opaque, signed ``next`` page position: only this server's cursors for this sort are accepted."""
        return encode_cursor(values, snapshot, self.cursor_key, _sort_signature(rtype, sort))

    def _open_cursor(self, token: str, rtype: str, sort: Sequence[SortKey]) -> tuple[tuple[object, ...], int]:
        try:
            values, snapshot = decode_cursor(token, self.cursor_key, _sort_signature(rtype, sort))
        except ValueError as exc:
            raise BadRequestError(f"_cursor: {exc}") from None
        return values, snapshot

    # ------------------------------------------------------------------ per type
    def _token(self, param: SearchParam, raw: str, negate: bool, rtype: str) -> TokenClause | PatientKeyClause:
        values: list[TokenValue] = []
        for v in _values(raw):
            if "|" in v:
                system, code = v.split("|", 1)
                if self.identity.is_national(system) and param.name == "identifier":
                    if not code:
                        raise BadRequestError(f"{param.name}: a national identifier search needs a value")
                    code = self._national_key(system, code)
                values.append(TokenValue(system, code or None))
            else:
                values.append(TokenValue(None, v))
                if param.name == "identifier":
                    # A bare value matches Identifier.value in any system (FHIR R4 §search token); national
                    # identifiers are indexed only by keyed hash, so try the value under each national system.
                    for system in self.identity.systems:
                        try:
                            values.append(TokenValue(system, self.identity.master_key(system, v)))
                        except NationalIdError:
                            continue
        if not values or any(v.code == "" for v in values):
            raise BadRequestError(f"{param.name}: empty token")
        return TokenClause(param.name, tuple(values), negate)

    def _national_key(self, system: str, value: str) -> str:
        try:
            return self.identity.master_key(system, value)
        except NationalIdError as exc:
            raise BadRequestError(f"identifier: {exc}") from None

    def date_values(self, name: str, raw: str) -> tuple[DateValue, ...]:
        out: list[DateValue] = []
        for v in _values(raw):
            prefix = v[:2] if v[:2] in _PREFIXES else "eq"
            text = v[2:] if v[:2] in _PREFIXES else v
            try:
                low, high = date_range(text, self.local_tz)
            except DateFormatError as exc:
                raise BadRequestError(f"{name}: {exc}") from None
            if prefix == "ap":
                # "approximately": widen by 10% of the distance to now, at least a day (FHIR leaves it to servers).
                gap = abs(to_us(self.now) - low)
                widen = max(gap // 10, _DAY_US)
                low, high = low - widen, high + widen
            out.append(DateValue(prefix, clamp_to_held(low), clamp_to_held(high)))
        return tuple(out)

    def _reference(self, param: SearchParam, raw: str, target_type: str | None = None) -> ReferenceClause:
        """``Type/id``, ``id`` or an absolute URL under this server; ``target_type`` is the ``:Type`` modifier."""
        values: list[tuple[str | None, str]] = []
        allowed = (target_type,) if target_type else param.targets
        for v in _values(raw):
            parsed = parse_reference(v, self.base_url)
            if parsed is not None:
                if allowed and parsed[0] not in allowed:
                    raise BadRequestError(f"{param.name} refers to {'/'.join(allowed)}, not {parsed[0]}")
                values.append(parsed)
            elif "/" not in v and v:
                values.append((allowed[0] if len(allowed) == 1 else None, v))
            else:
                raise BadRequestError(f"{param.name}: not a reference: {v!r}")
        return ReferenceClause(param.name, tuple(values))

    def _clause(self, rtype: str, param: SearchParam, modifier: str | None, raw: str) -> Clause:
        if modifier == "missing":
            if raw not in ("true", "false"):
                raise BadRequestError(f"{param.name}:missing takes true or false")
            return MissingClause(param.name, param.type.value, raw == "true")
        if param.name in ("_id", "_lastUpdated") and modifier is not None:
            raise UnsupportedModifierError(f"modifier :{modifier} is not supported on {param.name}")
        if param.name == "_id":
            return IdClause(tuple(_values(raw)))
        if param.name == "_lastUpdated":
            return LastUpdatedClause(self.date_values(param.name, raw))
        if param.type is ParamType.TOKEN:
            if modifier not in (None, "not"):
                raise UnsupportedModifierError(f"modifier :{modifier} is not supported on token parameter {param.name}")
            return self._token(param, raw, modifier == "not", rtype)
        if param.type is ParamType.STRING:
            if modifier not in (None, "exact", "contains"):
                raise UnsupportedModifierError(
                    f"modifier :{modifier} is not supported on string parameter {param.name}"
                )
            mode = modifier or "prefix"
            vals = _values(raw) if mode == "exact" else [normalize_string(v) for v in _values(raw)]
            if not any(vals):
                raise BadRequestError(f"{param.name}: empty string")
            return StringClause(param.name, tuple(vals), mode)
        if param.type is ParamType.DATE:
            if modifier is not None:
                raise UnsupportedModifierError(f"modifier :{modifier} is not supported on date parameter {param.name}")
            return DateClause(param.name, self.date_values(param.name, raw))
        if modifier is not None and not modifier[:1].isupper():
            raise UnsupportedModifierError(f"modifier :{modifier} is not supported on reference parameter {param.name}")
        if modifier is not None and param.targets and modifier not in param.targets:
            raise BadRequestError(f"{param.name} refers to {'/'.join(param.targets)}, not {modifier}")
        return self._reference(param, raw, modifier)

    def _chain(self, rtype: str, name: str, raw: str) -> Clause:
        head, _, tail = name.partition(".")
        ref_name, _, type_modifier = head.partition(":")
        ref = SEARCH_PARAMS[rtype].get(ref_name)
        if ref is None or ref.type is not ParamType.REFERENCE:
            raise UnknownParameterError(f"unknown chained parameter {name!r} for {rtype}")
        target_type = type_modifier or (ref.targets[0] if len(ref.targets) == 1 else "")
        if not target_type:
            raise BadRequestError(f"{ref_name} may refer to several types: write {ref_name}:Patient.{tail}")
        if target_type not in SEARCH_PARAMS:
            raise UnknownParameterError(f"{target_type} is not a resource type this server searches")
        inner_name, _, inner_mod = tail.partition(":")
        inner = SEARCH_PARAMS[target_type].get(inner_name)
        if inner is None or "." in tail:
            raise UnknownParameterError(f"unknown parameter {tail!r} for chained {target_type}")
        # patient.identifier with a national identifier: the master key *is* that search, answered from the index.
        if (
            target_type == "Patient"
            and inner_name == "identifier"
            and inner_mod == ""
            and ref_name in ("patient", "subject")
        ):
            values = _values(raw)
            national = [v.split("|", 1) for v in values if "|" in v and self.identity.is_national(v.split("|", 1)[0])]
            if national and len(national) == len(values):
                return PatientKeyClause(tuple(self._national_key(s, v) for s, v in national))
        inner_clause = self._clause(target_type, inner, inner_mod or None, raw)
        if not isinstance(inner_clause, TokenClause | StringClause | DateClause | ReferenceClause):
            raise UnknownParameterError(f"chained parameter {name!r} is not supported")
        return ChainClause(ref_name, target_type, inner_clause)

    # ------------------------------------------------------------------ whole request
    def parse(
        self,
        rtype: str,
        params: Sequence[tuple[str, str]],
        *,
        lenient: bool,
        default_count: int,
        max_count: int,
    ) -> ParsedSearch:
        self.limits.check(params)  # even when lenient: a cost bound is not a parameter to ignore
        known = SEARCH_PARAMS[rtype]
        clauses: list[Clause] = []
        ignored: list[str] = []
        sort: list[SortKey] = []
        includes: list[tuple[str, str]] = []
        revincludes: list[tuple[str, str]] = []
        count = default_count
        summary_count = False
        total = False
        cursor: tuple[object, ...] | None = None
        cursor_token: str | None = None
        snapshot: int | None = None
        self_params: list[tuple[str, str]] = []
        summary: str | None = None
        element_names: list[str] = []

        for name, raw in params:
            if name in ("_format", "_pretty"):
                continue
            if name == "_cursor":
                cursor_token = raw
                continue
            try:
                control, _, control_modifier = name.partition(":")
                if control in CONTROL and control_modifier:
                    raise UnsupportedModifierError(f"modifier :{control_modifier} is not supported on {control}")
                if name == "_count":
                    wanted = whole_number(raw)
                    if wanted is None:
                        raise BadRequestError("_count must be a whole number (at most 18 digits)")
                    count = min(wanted, max_count)
                elif name == "_sort":
                    for key in raw.split(","):
                        desc = key.startswith("-")
                        key_name = key.lstrip("-")
                        if key_name not in SORTABLE[rtype]:
                            sortable = ", ".join(sorted(SORTABLE[rtype]))
                            raise BadRequestError(f"_sort by {key_name!r} is not supported; sortable: {sortable}")
                        sort.append(SortKey(key_name, desc))
                elif name == "_include":
                    source, _, ref_name = raw.partition(":")
                    ref_name = ref_name.split(":")[0]
                    if source != rtype or ref_name not in INCLUDES.get(rtype, frozenset()):
                        allowed = ", ".join(f"{rtype}:{p}" for p in sorted(INCLUDES.get(rtype, ())))
                        raise UnknownParameterError(f"_include={raw} is not supported; supported: {allowed or 'none'}")
                    includes.append((source, ref_name))
                elif name == "_revinclude":
                    source, _, ref_name = raw.partition(":")
                    ref_name, _, target = ref_name.partition(":")
                    referring = REVINCLUDES.get(rtype, frozenset())
                    if f"{source}:{ref_name}" not in referring or target not in ("", rtype):
                        allowed = ", ".join(sorted(referring))
                        raise UnknownParameterError(
                            f"_revinclude={raw} is not supported for {rtype}; supported: {allowed or 'none'}"
                        )
                    revincludes.append((source, ref_name))
                elif name == "_summary":
                    if raw == "count":
                        summary_count = True
                    else:
                        summary = raw
                        try:
                            Subset.of(raw, ())  # the value checked here; combined with _elements below
                        except SubsetError as exc:
                            raise BadRequestError(str(exc)) from None
                elif name == "_elements":
                    element_names.append(raw)
                elif name == "_total":
                    if raw not in ("none", "estimate", "accurate"):
                        raise BadRequestError("_total must be none, estimate or accurate")
                    total = raw != "none"
                elif "." in name.split(":")[0] or ("." in name and ":" in name.split(".")[0]):
                    clauses.append(self._chain(rtype, name, raw))
                else:
                    base, _, modifier = name.partition(":")
                    param = known.get(base)
                    if param is None:
                        supported = ", ".join(sorted(known))
                        raise UnknownParameterError(
                            f"unknown search parameter {base!r} for {rtype}; supported: {supported}"
                        )
                    clauses.append(self._clause(rtype, param, modifier or None, raw))
            except UnknownParameterError as exc:
                if not lenient:
                    raise
                ignored.append(exc.diagnostics)
            else:
                self_params.append((name, raw))  # the self link lists only the parameters actually used
        try:
            subset = Subset.of(summary, element_names)
        except SubsetError as exc:
            raise BadRequestError(str(exc)) from None
        if cursor_token is not None:
            cursor, snapshot = self._open_cursor(cursor_token, rtype, sort)
        if count == 0:
            summary_count = True
        return ParsedSearch(
            query=Query(rtype, tuple(clauses), tuple(sort), max(count, 1), cursor, snapshot),
            includes=includes,
            revincludes=revincludes,
            summary_count=summary_count,
            total=total,
            ignored=ignored,
            self_params=self_params,
            subset=subset,
        )
