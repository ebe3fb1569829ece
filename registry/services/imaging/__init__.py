"""The DICOMweb gateway to the hospitals' PACS (DICOM PS3.18): :mod:`.gateway` (the use case), :mod:`.parameters`
(what a request may ask), :mod:`.pacs` (the operator's list of PACS), :mod:`.upstream` (the bounded, streaming HTTP
client), :mod:`.rewriting` (the PACS's URLs in its answers). The access decisions are the policy's
(``registry.services.policy.imaging``)."""

from registry.services.imaging.gateway import TRUNCATED, Forwarded, ImagingGateway, OpenedStudy, Readable
from registry.services.imaging.pacs import Pacs, PacsConfigError, PacsDirectory
from registry.services.imaging.parameters import Forward, Kind, Target
from registry.services.imaging.upstream import StreamBrokenError

__all__ = [
    "TRUNCATED",
    "Forward",
    "Forwarded",
    "ImagingGateway",
    "Kind",
    "OpenedStudy",
    "Pacs",
    "PacsConfigError",
    "PacsDirectory",
    "Readable",
    "StreamBrokenError",
    "Target",
]
