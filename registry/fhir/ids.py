"""Resource ids the server assigns, and the shape of a resident ID number that logs and the audit trail mask.

A version-4 UUID is hex in groups joined by ``-``; about one in two hundred holds 15 or 18 digits in a row across its
dashes, which is the shape of a resident ID number written with separators (``ID_SHAPED``) — and the audit trail and
every log mask that shape wherever it stands, so such an id would be masked in the patient's own audit references.
:func:`new_id` draws again until the id has no such run.
"""

from __future__ import annotations

import re
import uuid

ID_SHAPED = re.compile(r"(?<!\d)(\d(?:[\s+\-]?\d){16}[\s+\-]?[\dXx]|\d(?:[\s+\-]?\d){14})(?![\dXx])")
"""15 or 18 characters of a resident ID number, alone or with a space, '+' or '-' between any two of them."""


def new_id() -> str:
    """A random UUID (RFC 9562 version 4) as a FHIR id, never shaped like a resident ID number."""
    while True:
        candidate = str(uuid.uuid4())
        if ID_SHAPED.search(candidate) is None:
            return candidate
