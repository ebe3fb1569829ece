"""Cross-hospital patient identity (docs/design.md §4): one master key per person from a keyed hash of the national
identifier; the identifier itself is never stored — only that hash and a masked form for display.

Identifier systems that carry a national identifier are configured (``Settings.national_id_systems``), each with its
ID type; the key is ``HMAC-SHA256(secret, "<type>|<normalized value>")``, so the same number under two ID types does
not collide. Resident ID numbers are checked against GB 11643-1999 (18 characters, ISO 7064 MOD 11-2 check digit).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

RESIDENT_ID = "resident-id"
_RESIDENT_RE = re.compile(r"^[0-9]{17}[0-9X]$")  # ASCII digits only (after NFKC): other scripts' digits are refused
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
MASK = "*"


def resident_id_check_char(first17: str) -> str:
    """GB 11643-1999 check character for the first 17 digits."""
    return _CHECK[sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True)) % 11]


def looks_like_resident_id(value: str) -> bool:
    """A well-formed GB 11643-1999 number: 17 digits holding a real birth date (characters 7–14) and the check
    character they call for — what a resident ID card number is, whatever it is used as."""
    v = normalize(value)
    if not _RESIDENT_RE.match(v) or not v.isascii() or resident_id_check_char(v[:17]) != v[17]:
        return False
    try:
        born = date(int(v[6:10]), int(v[10:12]), int(v[12:14]))
    except ValueError:
        return False
    return born.year >= 1900


def normalize(value: str) -> str:
    """The identifier as one person has it whatever the keyboard: Unicode compatibility forms folded (NFKC: full-width
    ``１１０…`` is ``110…``), white space removed, letters upper case — so one person never gets two master keys."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", value)).upper()


def masked(value: str) -> str:
    """Display form: a resident ID number (15 or 18 characters) keeps its first 3 and last 4 characters
    (``110***********1234``); a shorter number (passport, permit) keeps only its last 2 (``*******21``), so most of
    it is never shown."""
    v = normalize(value)
    if len(v) >= 15:
        return v[:3] + MASK * (len(v) - 7) + v[-4:]
    return MASK * max(len(v) - 2, 1) + v[-2:]


class NationalIdError(ValueError):
    """A national identifier that cannot be right (bad form or check digit)."""


@dataclass(frozen=True, slots=True)
class IdentityPolicy:
    systems: Mapping[str, str]
    secret: bytes

    def is_national(self, system: str | None) -> bool:
        return system is not None and system in self.systems

    def check(self, system: str, value: str) -> str:
        """The normalized identifier, or ``NationalIdError`` naming what is wrong (never echoing the value)."""
        v = normalize(value)
        id_type = self.systems[system]
        if not v:
            raise NationalIdError(f"empty {id_type} identifier")
        if id_type == RESIDENT_ID:
            if not _RESIDENT_RE.match(v):
                raise NationalIdError("a resident ID number has 17 digits and a check digit or X")
            if resident_id_check_char(v[:17]) != v[17]:
                raise NationalIdError("resident ID number fails its GB 11643 check digit")
        elif len(v) < 5 or not (v.isascii() and v.isalnum()):
            raise NationalIdError(f"{id_type} identifier must be at least 5 letters or digits")
        return v

    def master_key(self, system: str, value: str) -> str:
        """The master patient key: 40 hex characters of HMAC-SHA256 over the ID type and normalized value."""
        message = f"{self.systems[system]}|{self.check(system, value)}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()[:40]
