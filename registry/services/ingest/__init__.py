"""Writing use cases (FHIR R4 create, update, delete, transaction and batch): see :mod:`.service`."""

from registry.services.ingest.service import Ingest, creation_condition
from registry.services.ingest.session import WriteContext, WriteResult

__all__ = ["Ingest", "WriteContext", "WriteResult", "creation_condition"]
