"""What a running registry holds: its settings, the catalog and the catalog's published FHIR forms.

Built once by ``create_app(settings)`` (the composition root) and reached by handlers as ``request.app.state.ctx``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import orjson

from catalog import Catalog
from registry.fhir.response import etag_of
from registry.services.capability import capability_statement
from registry.services.catalog_publication import (
    nonrecognition_reasons_codesystem,
    recognized_items_codesystem,
)
from registry.settings import Settings


@dataclass(frozen=True, slots=True)
class Published:
    """A resource serialized once, with its strong ETag."""

    body: bytes
    etag: str

    @classmethod
    def of(cls, resource: dict[str, object]) -> Published:
        body = orjson.dumps(resource)
        return cls(body, etag_of(body))


@dataclass(frozen=True, slots=True)
class AppContext:
    settings: Settings
    catalog: Catalog
    codesystems: dict[str, Published]
    metadata: Published

    @classmethod
    def build(cls, settings: Settings, catalog: Catalog, *, today: date) -> AppContext:
        return cls(
            settings=settings,
            catalog=catalog,
            codesystems={
                "recognized-items": Published.of(recognized_items_codesystem(catalog)),
                "nonrecognition-reasons": Published.of(nonrecognition_reasons_codesystem()),
            },
            metadata=Published.of(capability_statement(settings.fhir_base_url, published=today)),
        )
