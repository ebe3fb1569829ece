"""What of a request may be written down: national identifiers masked in audit rows and log lines, names kept out of
log lines (docs/design.md §4, §6).

A query string is read the way the server reads it — percent-decoded (``%7C`` is ``|``, ``+`` a space) — and, in
every parameter (``identifier``, ``patient.identifier``, ``subject:Patient.identifier``, ``identifier:not``, comma
lists, ``sourceIdentifier``, unknown names), the value of a token whose system is a configured national-identifier
system is masked, as is a bare ``identifier`` value the server would try as one. Name-bearing parameters (``name``,
``family``, ``given``, ``phonetic``, ``address…``, ``telecom``, ``phone``, ``email``, chained ``*.name``) are
replaced by ``***`` in log lines. Any other text is masked for ``<national system>|<value>`` tokens and for anything
shaped like a resident ID number, in its plain and in its percent-, JSON- and XHTML-decoded spellings.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Iterable, Sequence
from urllib.parse import parse_qsl, unquote_plus, urlencode

from registry.fhir.ids import ID_SHAPED
from registry.services.identity import IdentityPolicy, NationalIdError, masked

HIDDEN = "***"
NAME_PARAMETERS = frozenset(
    {"name", "family", "given", "phonetic", "address", "address-city", "address-country", "address-postalcode",
     "address-state", "telecom", "phone", "email", "_content", "_text"}
)  # fmt: skip
"""Search parameters (FHIR R4 Patient, Practitioner) whose values are a person's name or contact details."""

_ID_SHAPED = ID_SHAPED  # registry/fhir/ids.py: the ids the server assigns never have this shape
_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
_URL_QUERY = re.compile(r"(?P<path>(?:https?://[^\s?\"'#]*|/[^\s?\"'#]*)?)\?(?P<query>[^\s\"'#=]*=[^\s\"'#]*)")


def mask_id_shaped(text: str) -> str:
    """Anything shaped like a resident ID number (15 or 18 characters) masked, wherever it stands."""
    return _ID_SHAPED.sub(lambda m: masked(re.sub(r"[+\-]", "", m.group(1))), text)


def _decoded(text: str) -> str:
    """One layer of the spellings a client may use: percent-encoding, JSON ``\\uXXXX`` escapes, XHTML references."""
    text = unquote_plus(text) if "%" in text or "+" in text else text
    text = _JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text) if "\\u" in text else text
    return html.unescape(text) if "&" in text else text


def _path_segments(name: str) -> tuple[str, ...]:
    """``subject:Patient.identifier`` → ("subject", "identifier"); ``identifier:not`` → ("identifier",)."""
    return tuple(part.split(":", 1)[0] for part in name.split("."))


class Redactor:
    """Masking that knows the configured national-identifier systems (``Settings.national_id_systems``)."""

    def __init__(self, identity: IdentityPolicy) -> None:
        self.identity = identity
        systems = sorted(identity.systems, key=len, reverse=True)
        self._token = (
            re.compile("(" + "|".join(re.escape(s) for s in systems) + r")\|(\s*)([^\s,&|\"'<>\\]*)")
            if systems
            else None
        )

    # ------------------------------------------------------------------ any text
    def plain(self, text: str) -> str:
        """National-identifier tokens and ID-shaped numbers masked in ``text`` as written (nothing decoded)."""
        if self._token is not None and "|" in text:
            text = self._token.sub(lambda m: f"{m.group(1)}|{m.group(2)}{masked(m.group(3))}", text)
        return mask_id_shaped(text)

    def text(self, text: str) -> str:
        """National identifiers masked in any text, whatever its encoding; text with nothing to mask is unchanged,
        text that needed decoding to be masked is given back decoded (no spelling of the identifier survives)."""
        plain = self.plain(text)
        layer = text
        for _ in range(3):
            decoded = _decoded(layer)
            if decoded == layer:
                break
            layer = decoded
            if self.plain(layer) != layer:
                return self.plain(layer)
        return plain

    def line(self, text: str) -> str:
        """A log line: every query string in it read as a query (names hidden), the rest as :meth:`text`."""
        if "?" in text:
            text = _URL_QUERY.sub(
                lambda m: self.text(m.group("path")) + "?" + self.query(m.group("query"), names=False),
                text,
            )
        return self.text(text)

    # ------------------------------------------------------------------ query strings
    def _value(self, name: str, value: str) -> str:
        bare_is_national = _path_segments(name)[-1] in ("identifier", "sourceIdentifier", "patientIdentifier")
        parts = []
        for part in value.split(","):
            system, sep, code = part.partition("|")
            if sep and self.identity.is_national(system.strip()):
                part = f"{system}|{masked(code)}"
            elif not sep and bare_is_national and self._could_be_national(part):
                part = masked(part)
            parts.append(part)
        return self.text(",".join(parts))

    def _could_be_national(self, value: str) -> bool:
        for system in self.identity.systems:
            try:
                self.identity.check(system, value)
            except NationalIdError:
                continue
            return True
        return False

    def pairs(self, params: Iterable[tuple[str, str]], *, names: bool = True) -> list[tuple[str, str]]:
        """Parameters with national identifiers masked; with ``names=False`` name-bearing values are ``***``."""
        out = []
        for name, value in params:
            hidden = not names and _path_segments(name)[-1] in NAME_PARAMETERS
            out.append((self.text(name), HIDDEN if hidden else self._value(name, value)))
        return out

    def query(self, query: str, *, names: bool = True) -> str:
        """A raw query string, decoded and masked (see :meth:`pairs`), re-encoded."""
        if not query:
            return query
        return urlencode(self.pairs(parse_qsl(query, keep_blank_values=True), names=names), safe="|:/,*")

    def params(self, params: Sequence[tuple[str, str]]) -> str:
        """Already-decoded parameters (a POST ``_search`` form) as a masked query string for the audit trail."""
        return urlencode(self.pairs(params), safe="|:/,*")


@functools.lru_cache(maxsize=16)
def _for_systems(systems: tuple[tuple[str, str], ...]) -> Redactor:
    return Redactor(IdentityPolicy(dict(systems), b""))


def redactor_for(identity: IdentityPolicy) -> Redactor:
    """The redactor of an identity policy (one per configuration of national-identifier systems; no secret held)."""
    return _for_systems(tuple(sorted(identity.systems.items())))
