"""Bundle entries (FHIR R4 §transaction, §batch) as the write engine sees them: the request of each entry, its exact
resource text, its step through the engine, and how a failed entry is reported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from registry.errors import (
    BadRequestError,
    InvalidResourceError,
    RegistryError,
)
from registry.fhir.json_text import JsonShapeError, array_elements, decoded_end, object_members
from registry.fhir.patch import Patch, PatchSyntaxError, binary_json_patch, fhirpath_patch
from registry.fhir.survey import Survey
from registry.services.ingest.session import Prepared
from registry.store.records import Stored

REASON = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
           409: "Conflict", 410: "Gone", 412: "Precondition Failed", 413: "Payload Too Large",
           422: "Unprocessable Entity"}  # fmt: skip


def outcome_of(exc: RegistryError) -> dict[str, Any]:
    issues = getattr(exc, "issues", None) or [("; ".join(exc.expression), exc.diagnostics)]
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "error", "code": exc.code, "diagnostics": msg, **({"expression": [where]} if where else {})}
            for where, msg in issues
        ],
    }


def at_entry(exc: RegistryError, where: str) -> RegistryError:
    """The same error, saying which Bundle entry it came from."""
    exc.diagnostics = f"{where}: {exc.diagnostics}"
    exc.expression = [where, *exc.expression]
    if isinstance(exc, InvalidResourceError):
        exc.issues = [(f"{where}.resource.{loc}" if loc else where, msg) for loc, msg in exc.issues]
    exc.args = (exc.diagnostics,)
    return exc


@dataclass(slots=True)
class Step:
    """One entry on its way through the write engine."""

    item: BundleItem
    type: str = ""
    id: str = ""
    query: str | None = None
    resource: dict[str, Any] | None = None
    prepared: Prepared | None = None
    done: Done | None = None
    recreated: bool = False
    patched: bool = False  # a PATCH, turned into the update of its result
    condition_missed: bool = False
    repeating: str | None = None  # a POST an earlier attempt found to repeat this stored resource (its id)
    conflict: RegistryError | None = None  # a POST's clash, raised once no repeat is left to learn
    minted: bool = False  # its id is of this server's making, here and now (a POST, a conditional update that missed)
    survey: Survey | None = None  # the one walk over ``resource`` as parsed

    @classmethod
    def of(cls, item: BundleItem) -> Step:
        return cls(item)

    @property
    def references(self) -> list[tuple[str, dict[str, Any]]]:
        return self.survey.references if self.survey is not None else []

    @property
    def index(self) -> int:
        return self.item.index

    @property
    def method(self) -> str:
        return self.item.method

    @property
    def full_url(self) -> str | None:
        return self.item.full_url

    def identifier_conditions(self) -> list[tuple[str, str, str]]:
        condition = self.item.if_none_exist if self.method == "POST" else self.query
        key = identifier_condition(self.type, condition) if condition else None
        return [key] if key else []


def identifier_condition(rtype: str, query: str) -> tuple[str, str, str] | None:
    """``identifier=system|value`` alone (the push clients' condition) → (type, system, value), answered by one
    batched lookup of the unique business identifiers; anything else is a general search."""
    params = parse_qsl(query.lstrip("?"), keep_blank_values=True)
    if len(params) != 1 or params[0][0] != "identifier" or "|" not in params[0][1] or "," in params[0][1]:
        return None
    system, value = params[0][1].split("|", 1)
    return (rtype, system, value) if system and value else None


@dataclass(frozen=True, slots=True)
class Done:
    index: int
    status_text: str
    stored: Stored | None


@dataclass(frozen=True, slots=True)
class BundleItem:
    index: int
    method: str
    url: str
    full_url: str | None
    text: str | None
    if_none_exist: str | None
    if_match: str | None
    patch: Patch | None = None  # a PATCH entry's document (JSON Patch in a Binary, or FHIRPath Patch Parameters)

    @classmethod
    def of(cls, index: int, entry: Any, text: str | None) -> BundleItem:
        where = f"Bundle.entry[{index}]"
        if not isinstance(entry, dict):
            raise BadRequestError(f"{where} must be an object")
        request = entry.get("request")
        if not isinstance(request, dict):
            raise BadRequestError(f"{where}.request is required in a transaction or batch")
        method = str(request.get("method", "")).upper()
        if method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            raise BadRequestError(f"{where}.request.method {request.get('method')!r} is not supported "
                                  "(GET, POST, PUT, PATCH, DELETE)")  # fmt: skip
        url = request.get("url")
        if not isinstance(url, str) or not url:
            raise BadRequestError(f"{where}.request.url is required")
        if method in ("POST", "PUT") and text is None:
            raise BadRequestError(f"{where}.resource is required for {method}")
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        patch = None
        if method == "PATCH":
            patch = _entry_patch(entry.get("resource"), where)
            text = None
        return cls(index, method, url, full_url, text, request.get("ifNoneExist"), request.get("ifMatch"), patch)

    def target(self) -> tuple[str, str, str | None]:
        """(type, id, conditional query) from request.url (relative to the base)."""
        parts = urlsplit(self.url)
        path = parts.path.strip("/")
        segments = path.split("/")
        rtype = segments[0]
        rid = segments[1] if len(segments) > 1 else None
        query = parts.query or None
        if self.method == "POST" and (rid is not None or query):
            raise BadRequestError(f"Bundle.entry[{self.index}]: POST url must be the resource type, got {self.url!r}")
        if self.method == "PATCH" and (rid is None or query):
            raise BadRequestError(f"Bundle.entry[{self.index}]: PATCH url is Type/id (conditional patch is not "
                                  "supported)")  # fmt: skip
        if self.method in ("PUT", "DELETE") and rid is None and query is None:
            raise BadRequestError(f"Bundle.entry[{self.index}]: {self.method} url needs an id or a search query")
        if self.method == "DELETE" and rid is None:
            raise BadRequestError(f"Bundle.entry[{self.index}]: conditional delete is not supported")
        return rtype, rid or "", query


def _entry_patch(resource: Any, where: str) -> Patch:
    """A PATCH entry's resource (R4 bundle.html): FHIRPath Patch Parameters, or a JSON Patch in a Binary."""
    try:
        if isinstance(resource, dict) and resource.get("resourceType") == "Binary":
            return binary_json_patch(resource)
        return fhirpath_patch(resource)
    except PatchSyntaxError as exc:
        raise BadRequestError(f"{where}.resource: {exc}", expression=[f"{where}.resource"]) from None


def entry_resource_texts(text: str) -> dict[int, str]:
    """The exact text of each ``entry[i].resource`` of a Bundle, in one pass: each entry's members are decoded once
    (by the C scanner, to find where each ends), the Bundle and its entry array never as a whole."""
    out: dict[int, str] = {}
    count = 0

    def entry_end(text: str, start: int) -> int:
        nonlocal count
        if text[start] != "{":
            count += 1
            return decoded_end(text, start)
        spans, end = object_members(text, start)
        for key, _m, r_start, r_end in spans:
            if key == "resource":
                out[count] = text[r_start:r_end]
        count += 1
        return end

    def bundle_value_end(key: str, text: str, start: int) -> int:
        if key == "entry" and text[start] == "[":
            return array_elements(text, start, entry_end)[1]
        return decoded_end(text, start)

    try:
        object_members(text, 0, bundle_value_end)
    except JsonShapeError as exc:
        raise BadRequestError(f"the Bundle is not well-formed: {exc}") from None
    return out
