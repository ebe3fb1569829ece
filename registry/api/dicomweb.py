"""The DICOMweb gateway's token API (``/dicomweb``, DICOM PS3.18): QIDO-RS, WADO-RS metadata and instances, rendered
frames and thumbnails of the studies the registry references, for any principal with a bearer token — the policy
decides per study (``registry.dicomweb_routes``, ``registry.services.imaging``)."""

from __future__ import annotations

from registry.dicomweb_routes import dicomweb_router
from registry.endpoint import authenticate_in_loop

router = dicomweb_router("/dicomweb", authenticate_in_loop, include_in_schema=True, tags=["DICOMweb"])
