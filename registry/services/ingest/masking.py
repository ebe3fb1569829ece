"""National identifiers masked wherever a written document holds them (docs/design.md §4, §6).

The national identifiers a resource carries (``Patient.identifier`` with a system of ``Settings.national_id_systems``,
or any Identifier of such a system elsewhere in it) are known once it is parsed. Every spelling of them is then
replaced by the masked form (``110***********1234``) in every string of the document — the identifier's value, the
narrative (``text.div``), notes, extensions, member names: whatever the JSON escapes (``"\\u0031\\u0031…"``), the
case of the letters (a lower-case ``x`` check character), whitespace or dashes between the characters, XHTML
character references (``&#49;``), percent-encoding (``%31``) or a literal ``\\u0031`` inside the text. The stored text
keeps every other byte as it was accepted: only the string tokens that hold an identifier are re-encoded.

Compiling the pattern of every spelling costs milliseconds per identifier, so it is compiled only for a string that
may hold one: a string without ``%``, ``&`` or ``\\`` (and without the four letters that match an ASCII letter when
case is ignored: ``İ ı K ſ``) can spell an identifier only with its own characters, either case, between the
separators — so it holds one exactly when, separators removed and upper-cased, it contains the identifier. Most
strings of a resource are such strings and are answered without the pattern.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from registry.fhir.json_text import rewrite_strings
from registry.services.identity import IdentityPolicy, looks_like_resident_id, masked, normalize

_BETWEEN = r"[\s+\-]*"
_SEPARATORS = re.compile(r"[\s+\-]+")  # the characters _BETWEEN lets stand between those of an identifier
# characters only the pattern reads: escapes (percent-encoding, character references, \\u) and the non-ASCII letters
# that match an ASCII letter when case is ignored (U+0130, U+0131, KELVIN SIGN, LONG S)
_PATTERN_ONLY = ("%", "&", "\\", "\u0130", "\u0131", "\u212a", "\u017f")


def _spelling(char: str) -> str:
    """Every way one character of an identifier (either letter case) is written in a JSON string, XHTML or a URL."""
    if not (char.isascii() and char.isalnum()):
        return re.escape(char)
    forms = [re.escape(char)]
    for code in sorted({ord(char.upper()), ord(char.lower())}):
        forms += [f"%{code:02x}", f"&#0*{code};", f"&#x0*{code:x};", f"\\\\u{code:04x}"]
    return "(?:" + "|".join(forms) + ")"


class NationalIdMask:
    """The national identifiers of one document, and how to mask them in its text and in its parsed form."""

    def __init__(self, values: Iterable[str]) -> None:
        self._wanted = sorted({v for v in (normalize(x) for x in values) if v}, key=len, reverse=True)
        self._stand_in = {v: masked(v) for v in self._wanted}
        self._compiled: list[tuple[re.Pattern[str], str]] | None = None
        # the identifiers as the flat form of a string would hold them; None: one is not ASCII, always the pattern
        ascii_only = all(v.isascii() for v in self._wanted)
        self._flat = [_SEPARATORS.sub("", v) for v in self._wanted] if ascii_only else None

    def __bool__(self) -> bool:
        return bool(self._wanted)

    @property
    def _patterns(self) -> list[tuple[re.Pattern[str], str]]:
        if self._compiled is None:
            self._compiled = [
                (re.compile(_BETWEEN.join(_spelling(c) for c in v), re.IGNORECASE), masked(v)) for v in self._wanted
            ]
        return self._compiled

    def _may_hold(self, value: str) -> bool:
        """False only when no spelling of an identifier is in ``value`` (exact for strings the pattern alone reads
        no differently: see the module's note); True sends the string to the pattern."""
        if not self._wanted or len(value) < len(self._wanted[-1]):
            return False  # every character of an identifier takes at least one of the string
        if self._flat is None or any(c in value for c in _PATTERN_ONLY):
            return True
        flat = _SEPARATORS.sub("", value).upper()
        return any(v in flat for v in self._flat)

    def string(self, value: str) -> str:
        """``value`` with every spelling of the identifiers masked; a value that *is* one becomes its masked form."""
        whole = self._stand_in.get(normalize(value))
        if whole is not None:
            return whole
        if not self._may_hold(value):
            return value
        for pattern, stand_in in self._patterns:
            value = pattern.sub(stand_in, value)
        return value

    def holds(self, value: str) -> bool:
        return self._may_hold(value) and any(pattern.search(value) for pattern, _ in self._patterns)

    def refusals(
        self, rtype: str, rid: str, resource: dict[str, Any], identity: IdentityPolicy
    ) -> list[tuple[str, str]]:
        """What cannot be stored masked: a resource id that is a national identifier (ids travel in URLs, references
        and logs), and a business identifier of another system whose value is one (it is indexed as written)."""
        issues: list[tuple[str, str]] = []
        if self.holds(rid) or looks_like_resident_id(rid):
            issues.append((f"{rtype}.id", "a resource id must not be a national identifier"))
        for i, ident in enumerate(resource.get("identifier") or []):
            if (
                isinstance(ident, dict)
                and isinstance(ident.get("value"), str)
                and not identity.is_national(ident.get("system"))
                and self.holds(ident["value"])
            ):
                issues.append(
                    (
                        f"{rtype}.identifier[{i}]",
                        "the value is a national identifier: send it only with its national identifier system",
                    )
                )
        return issues

    def text(self, json_text: str) -> str:
        """The JSON text with the identifiers masked in every string token, byte-exact elsewhere."""
        return rewrite_strings(json_text, self.string) if self else json_text

    def document(self, node: Any) -> None:
        """Mask the parsed document in place (dicts and lists keep their identity: callers hold references)."""
        if not self:  # no identifier to mask (a report, an observation): every string stays as it is
            return
        if isinstance(node, dict):
            items = [(self.string(k), self.string(v) if isinstance(v, str) else v) for k, v in node.items()]
            if any(k != k2 or v is not v2 for (k, v), (k2, v2) in zip(node.items(), items, strict=True)):
                node.clear()
                node.update(items)
            for value in node.values():
                self.document(value)
        elif isinstance(node, list):
            for i, element in enumerate(node):
                if isinstance(element, str):
                    node[i] = self.string(element)
                else:
                    self.document(element)
