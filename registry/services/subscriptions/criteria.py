"""What a Subscription asks for (FHIR R4 subscription.html): its ``criteria`` — a search without ``[base]`` and without
a leading ``/`` — parsed once with the registry's own search parser, and its ``rest-hook`` channel.

The registry implements R4's own criteria-based Subscription (not the topic-based Subscriptions Backport IG) and the
``rest-hook`` channel only. R4 has no handshake: the server checks a ``requested`` Subscription as it accepts it
and sets it ``active`` (``off`` stays ``off``; ``error`` is the server's to set). Refused with 422 and an
OperationOutcome: another channel type, an endpoint that is not https (plain http only to 127.0.0.1 / localhost /
::1 when ``REGISTRY_SUBSCRIPTION_ALLOW_HTTP_LOOPBACK`` is set), a ``channel.header`` that is not ``Name: value``, a
criteria on a type that cannot be subscribed to, with result controls (``_count``, ``_sort``, ``_include``…), a
parameter the registry does not search, or a national identifier in clear (the criteria are stored as written: name
the patient as ``patient=Patient/<id>``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from registry.errors import BadRequestError, UnprocessableError
from registry.fhir.search_params import PATIENT_COMPARTMENT
from registry.services.identity import IdentityPolicy
from registry.services.search_query import CONTROL, SearchParser
from registry.store.query import ChainClause, Clause, PatientKeyClause, Query, ReferenceClause
from registry.store.repository import Repository

CRITERIA_TYPES = PATIENT_COMPARTMENT
"""The results a Subscription may watch: DiagnosticReport, Observation, ImagingStudy, ServiceRequest."""
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_HEADER = re.compile(r"^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\r\n]*)$")
_RESIDENT_ID = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")


def _refuse(element: str, text: str) -> UnprocessableError:
    return UnprocessableError(f"Subscription.{element}: {text}", expression=[f"Subscription.{element}"])


@dataclass(frozen=True, slots=True)
class Channel:
    """A rest-hook channel: where to, whether the resource goes along (its MIME type) and the extra headers."""

    endpoint: str
    payload: str | None
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Criteria:
    type: str
    clauses: tuple[Clause, ...]


def channel_of(resource: Mapping[str, Any], *, allow_http_loopback: bool) -> Channel:
    channel = resource.get("channel")
    if not isinstance(channel, Mapping):
        raise _refuse("channel", "a Subscription needs a channel")
    if channel.get("type") != "rest-hook":
        raise _refuse("channel.type", f"{channel.get('type')!r} is not supported; this server delivers rest-hook only")
    endpoint = channel.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise _refuse("channel.endpoint", "a rest-hook Subscription needs an endpoint URL")
    try:
        url = urlsplit(endpoint)
        host = url.hostname or ""
        url.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise _refuse("channel.endpoint", f"{endpoint!r} is not a URL") from None
    if url.scheme == "http":
        if not allow_http_loopback or host not in LOOPBACK:
            raise _refuse("channel.endpoint", "the endpoint must be https (plain http is accepted only for "
                          "127.0.0.1/localhost when REGISTRY_SUBSCRIPTION_ALLOW_HTTP_LOOPBACK is set)")  # fmt: skip
    elif url.scheme != "https" or not host:
        raise _refuse("channel.endpoint", f"{endpoint!r} is not an https URL")
    if url.username or url.password:
        raise _refuse("channel.endpoint", "credentials go in channel.header, not in the URL")
    payload = channel.get("payload")
    if payload is not None and (not isinstance(payload, str) or "/" not in payload):
        raise _refuse("channel.payload", f"{payload!r} is not a MIME type (application/fhir+json)")
    headers: list[tuple[str, str]] = []
    for n, raw in enumerate(channel.get("header") or []):
        match = _HEADER.match(raw) if isinstance(raw, str) else None
        if match is None:
            raise _refuse(f"channel.header[{n}]", "each header is one 'Name: value' line")
        headers.append((match.group(1), match.group(2).strip()))
    return Channel(endpoint, payload, tuple(headers))


class CriteriaParser:
    """Parses criteria strings into search clauses (with the registry's one search parser)."""

    def __init__(self, identity: IdentityPolicy, local_tz: Any, base_url: str) -> None:
        self.identity = identity
        self.local_tz = local_tz
        self.base_url = base_url

    def parse(self, text: str, *, now: Any) -> Criteria:
        text = text.strip()
        if text.startswith("/") or "://" in text.split("?", 1)[0]:
            raise _refuse("criteria", "a search without [base] and without a leading '/' (DiagnosticReport?patient=…)")
        rtype, _, query = text.partition("?")
        if rtype not in CRITERIA_TYPES:
            raise _refuse("criteria", f"{rtype or 'the type'} cannot be subscribed to; one of: "
                          f"{', '.join(sorted(CRITERIA_TYPES))}")  # fmt: skip
        params = parse_qsl(query, keep_blank_values=True)
        for name, value in params:
            if name.split(":")[0] in CONTROL:
                raise _refuse("criteria", f"{name} shapes a search's answer, it selects nothing; criteria filter only")
            if self._names_national_id(value):
                raise _refuse("criteria", "a national identifier in clear; name the patient as patient=Patient/<id>")
        parser = SearchParser(self.identity, self.local_tz, self.base_url, now=now)
        try:
            parsed = parser.parse(rtype, params, lenient=False, default_count=1, max_count=1)
        except BadRequestError as exc:
            raise _refuse("criteria", exc.diagnostics) from None
        return Criteria(rtype, parsed.query.clauses)

    def _names_national_id(self, value: str) -> bool:
        return _RESIDENT_ID.search(value) is not None or any(
            part.split("|", 1)[0] in self.identity.systems for part in value.split(",") if "|" in part
        )


def named_patients(repo: Repository, criteria: Criteria) -> list[str | None]:
    """The master keys of the patients a criteria names (``patient``, ``subject``, chained on either); None for a
    reference that resolves to no live Patient."""
    keys: list[str | None] = []
    for clause in criteria.clauses:
        if isinstance(clause, ReferenceClause) and clause.param in ("patient", "subject"):
            refs = [("Patient", rid) for rtype, rid in clause.values if rtype in (None, "Patient")]
            found = repo.get_many(refs) if refs else {}
            keys += [found[r].patient_key if r in found and not found[r].deleted else None for r in refs]
        elif isinstance(clause, PatientKeyClause):
            keys += list(clause.keys)
        elif isinstance(clause, ChainClause) and clause.param in ("patient", "subject"):
            rows, _ = repo.search(Query("Patient", (clause.inner,), count=50))
            keys += [r.patient_key for r in rows] or [None]
    return keys


def header_lines(headers: Sequence[tuple[str, str]]) -> list[str]:
    return [f"{name}: {value}" for name, value in headers]
