"""Whether a study's images may be opened through the DICOMweb gateway (docs/design.md §6; DICOM PS3.18).

Reading the images is reading the study: the same rules as a read of its ``ImagingStudy`` (:mod:`.reading` — a
patient's own studies; a hospital or clinician within its care context or by break-glass; :mod:`.consent` — paused
sharing and sensitive items withheld beyond the issuer). The gateway asks that read first, then this module, which
decides whether the images may be **forwarded**:

- the study is not withdrawn (``entered-in-error`` or ``cancelled``: no images, 404);
- it names an ``Endpoint`` of ``connectionType`` ``dicom-wado-rs`` that is ``active`` and **managed by the study's
  issuing hospital** (a hospital cannot point its study at another hospital's PACS);
- the operator configured that Endpoint for forwarding, as the PACS of that same hospital
  (``REGISTRY_DICOMWEB_ENDPOINTS``): the Endpoint's ``address`` is a hospital's statement, never a URL the registry
  fetches by itself (server-side request forgery).

A study that fails the last two is **502**: the registry, acting as a gateway, has no usable upstream for it. It is
not a 404 (the study exists and the caller may read it), nor a 403 (nothing is refused to the caller); the viewer
says the images are not reachable through the registry. Decided only after the read was allowed, so it discloses
nothing to a caller who may not read the study.

Caching (:func:`cache_control`): rendered frames and thumbnails may be kept by the caller's own browser only
(``private``, for ``REGISTRY_DICOMWEB_IMAGE_MAX_AGE_SECONDS``; ``Vary`` on the credentials), never under break-glass
(each look is an override, kept nowhere); everything else — DICOM instances, metadata, query results — is
``no-store``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registry.errors import BadGatewayError, NotFoundError
from registry.fhir.extract import parse_reference
from registry.services.policy.purpose import BreakGlass

WADO_RS = "dicom-wado-rs"
WITHDRAWN = frozenset({"entered-in-error", "cancelled"})
NOT_REACHABLE = "the images of this study are not reachable through the registry: "


def study_endpoints(study: Mapping[str, Any]) -> list[str]:
    """The ids of the Endpoints an ImagingStudy names (``ImagingStudy.endpoint``), in order."""
    out: list[str] = []
    for ref in study.get("endpoint") or []:
        parsed = parse_reference(ref.get("reference", ""), None) if isinstance(ref, Mapping) else None
        if parsed and parsed[0] == "Endpoint":
            out.append(parsed[1])
    return out


def is_wado_rs(endpoint: Mapping[str, Any]) -> bool:
    connection = endpoint.get("connectionType")
    return isinstance(connection, Mapping) and connection.get("code") == WADO_RS


def check_images(
    study: Mapping[str, Any],
    issuer: str | None,
    endpoint: Mapping[str, Any] | None,
    pacs_organization: str | None,
) -> None:
    """Whether the images of a study the caller may read can be forwarded (module docstring); raises otherwise.
    ``endpoint``: the study's WADO-RS Endpoint (None: it names none); ``pacs_organization``: the hospital the operator
    configured that Endpoint's PACS for (None: not configured)."""
    if study.get("status") in WITHDRAWN:
        raise NotFoundError(f"the study was withdrawn by its hospital (status {study.get('status')}): no images")
    if endpoint is None:
        raise BadGatewayError(NOT_REACHABLE + "its hospital named no WADO-RS Endpoint (dicom-wado-rs) for it")
    managing = endpoint.get("managingOrganization")
    ref = managing.get("reference", "") if isinstance(managing, Mapping) else ""
    parsed = parse_reference(ref, None) if isinstance(ref, str) else None
    if issuer is None or parsed != ("Organization", issuer):
        raise BadGatewayError(NOT_REACHABLE + "its Endpoint is not managed by the hospital that issued the study")
    if endpoint.get("status") != "active":
        raise BadGatewayError(NOT_REACHABLE + f"its Endpoint is {endpoint.get('status') or 'without a status'}")
    if pacs_organization is None:
        raise BadGatewayError(
            NOT_REACHABLE + "the registry's operator has not configured forwarding to its hospital's PACS"
        )
    if pacs_organization != issuer:
        raise BadGatewayError(NOT_REACHABLE + "the PACS configured for its Endpoint belongs to another hospital")


def cache_control(image: bool, break_glass: BreakGlass | None, max_age: int) -> str:
    """``Cache-Control`` of a gateway answer: ``image`` — a rendered frame or thumbnail."""
    if image and break_glass is None and max_age > 0:
        return f"private, max-age={max_age}"
    return "no-store"
