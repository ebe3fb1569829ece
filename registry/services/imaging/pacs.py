"""The PACS the DICOMweb gateway may forward to — configured by the operator, never taken from a hospital's data.

A hospital writes its ``Endpoint`` (FHIR R4 Endpoint, ``connectionType`` ``dicom-wado-rs``) itself, address included:
fetching ``Endpoint.address`` as such would let any hospital make the registry call any URL (server-side request
forgery: another hospital's PACS, the registry's own network). So the registry forwards only to the PACS listed in
``REGISTRY_DICOMWEB_ENDPOINTS`` — a JSON object, or the path of a JSON file holding one::

    {"hosp-a-wado": {"organization": "hosp-a", "base": "http://10.1.0.5:8042/dicom-web",
                     "username": "registry", "password": "…", "timeout": 15},
     "https://pacs.hosp-b.example.cn/dicom-web": {"organization": "hosp-b", "base": "https://pacs.hosp-b.example.cn/dicom-web",
                     "authorization": "Bearer …"}}

Each key is an Endpoint id, or an absolute URL matching an Endpoint's ``address`` exactly (a trailing ``/`` aside);
the id wins when both match. Each entry names:

- ``organization`` (required): the hospital whose PACS it is. The gateway forwards a study only when this, the
  Endpoint's ``managingOrganization`` and the study's issuer are one and the same hospital;
- ``base`` (required): the DICOMweb root the registry calls (``http``/``https``; may differ from the Endpoint's
  address, e.g. an internal address of the same PACS);
- credentials: ``authorization`` (a whole ``Authorization`` header value) or ``username`` + ``password`` (HTTP
  Basic), sent to this PACS only; none by default;
- ``timeout`` (seconds until the PACS's answer has begun, default 15), ``connect_timeout`` (default 3),
  ``read_timeout`` (longest silence while a body streams, default 30);
- ``advertised_base``: the DICOMweb root the PACS writes into its own answers (RetrieveURL, BulkDataURI), when it
  is not ``base`` (Orthanc writes its ``DicomWeb.Host`` setting); the gateway replaces it by its own in answers;
- ``thumbnail``: ``rendered`` (default: a thumbnail is the PACS's ``/rendered`` at a small viewport — Orthanc's
  DICOMweb plugin before 1.15 has no ``/thumbnail``) or ``native`` (forward to the PACS's own ``/thumbnail``).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

THUMBNAIL_MODES = ("rendered", "native")
_KNOWN = frozenset({"organization", "base", "authorization", "username", "password", "timeout", "connect_timeout",
                    "read_timeout", "thumbnail", "advertised_base"})  # fmt: skip


class PacsConfigError(ValueError):
    """``REGISTRY_DICOMWEB_ENDPOINTS`` does not say what the gateway needs: the registry refuses to start."""


@dataclass(frozen=True, slots=True)
class Pacs:
    """One PACS the gateway forwards to."""

    key: str  # the configuration key it was found by (for logs; never sent to clients)
    organization: str
    base: str  # without a trailing slash
    headers: tuple[tuple[str, str], ...] = ()
    timeout: float = 15.0
    connect_timeout: float = 3.0
    read_timeout: float = 30.0
    thumbnail: str = "rendered"
    advertised: tuple[str, ...] = ()  # roots the PACS writes into its answers (base first), without trailing slash

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"


def _seconds(entry: Mapping[str, Any], name: str, default: float, key: str) -> float:
    value = entry.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 600:
        raise PacsConfigError(f"REGISTRY_DICOMWEB_ENDPOINTS[{key!r}].{name} must be a number of seconds in (0, 600]")
    return float(value)


def _pacs(key: str, entry: Any) -> Pacs:
    if not isinstance(entry, Mapping):
        raise PacsConfigError(f"REGISTRY_DICOMWEB_ENDPOINTS[{key!r}] must be an object")
    unknown = sorted(set(entry) - _KNOWN)
    if unknown:
        raise PacsConfigError(f"REGISTRY_DICOMWEB_ENDPOINTS[{key!r}]: unknown field(s) {', '.join(unknown)}")
    org, base = entry.get("organization"), entry.get("base")
    if not isinstance(org, str) or not org:
        raise PacsConfigError(f"REGISTRY_DICOMWEB_ENDPOINTS[{key!r}] needs the hospital's Organization id")
    if not isinstance(base, str) or not base.startswith(("http://", "https://")):
        raise PacsConfigError(f"REGISTRY_DICOMWEB_ENDPOINTS[{key!r}].base must be an http(s) URL")
    headers: list[tuple[str, str]] = []
    auth, user, password = entry.get("authorization"), entry.get("username"), entry.get("password")
    if auth is not None and user is not None:
        raise PacsConfigError(f"REGISTRY_DICOMWEB_ENDPOINTS[{key!r}]: give authorization or username, not both")
    if auth is not None:
        if not isinstance(auth, str) or not auth.strip() or "\n" in auth or "\r" in auth:
            raise PacsConfigError(f"REGISTRY_DICOMWEB_ENDPOINTS[{key!r}].authorization must be a header value")
        headers.append(("Authorization", auth.strip()))
    elif user is not None or password is not None:
        if not isinstance(user, str) or not isinstance(password, str) or ":" in user:
            raise PacsConfigError(f"REGISTRY_DICOMWEB_ENDPOINTS[{key!r}]: username and password must both be text")
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers.append(("Authorization", f"Basic {token}"))
    advertised = entry.get("advertised_base")
    if advertised is not None and (
        not isinstance(advertised, str) or not advertised.startswith(("http://", "https://"))
    ):
        raise PacsConfigError(f"REGISTRY_DICOMWEB_ENDPOINTS[{key!r}].advertised_base must be an http(s) URL")
    roots = tuple(dict.fromkeys(r.rstrip("/") for r in (base, advertised) if r))
    thumbnail = entry.get("thumbnail", "rendered")
    if thumbnail not in THUMBNAIL_MODES:
        raise PacsConfigError(f"REGISTRY_DICOMWEB_ENDPOINTS[{key!r}].thumbnail must be one of {THUMBNAIL_MODES}")
    return Pacs(
        key,
        org,
        base.rstrip("/"),
        tuple(headers),
        _seconds(entry, "timeout", 15.0, key),
        _seconds(entry, "connect_timeout", 3.0, key),
        _seconds(entry, "read_timeout", 30.0, key),
        str(thumbnail),
        roots,
    )


class PacsDirectory:
    """The configured PACS, found by the Endpoint a study references."""

    def __init__(self, by_id: Mapping[str, Pacs], by_address: Mapping[str, Pacs]) -> None:
        self.by_id = dict(by_id)
        self.by_address = dict(by_address)

    @classmethod
    def parse(cls, raw: str | None) -> PacsDirectory:
        """From the setting's value: a JSON object, or the path of a file holding one; None or empty: no PACS."""
        text = (raw or "").strip()
        if not text:
            return cls({}, {})
        if not text.startswith("{"):
            path = Path(text).expanduser()
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise PacsConfigError(f"REGISTRY_DICOMWEB_ENDPOINTS: cannot read {path}: {exc.strerror}") from None
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise PacsConfigError(f"REGISTRY_DICOMWEB_ENDPOINTS is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise PacsConfigError("REGISTRY_DICOMWEB_ENDPOINTS must be a JSON object")
        by_id: dict[str, Pacs] = {}
        by_address: dict[str, Pacs] = {}
        for key, entry in doc.items():
            pacs = _pacs(key, entry)
            if key.startswith(("http://", "https://")):
                by_address[key.rstrip("/")] = pacs
            else:
                by_id[key] = pacs
        return cls(by_id, by_address)

    def __bool__(self) -> bool:
        return bool(self.by_id or self.by_address)

    def find(self, endpoint_id: str, address: object) -> Pacs | None:
        found = self.by_id.get(endpoint_id)
        if found is None and isinstance(address, str):
            found = self.by_address.get(address.rstrip("/"))
        return found
