"""A message's segments split into fields, and field values read from them, exactly as the ``hl7`` library's
``hl7.parse`` and ``Segment.extract_field`` give them — without building the library's containers for every field,
repetition and component, which cost more than the mapping itself.

What the library does and this module keeps (python-hl7 0.4.5, ``parser._split`` and ``containers.Segment``): the
message is stripped and split at carriage returns; a segment holding none of the message's delimiters is one field;
a segment whose first three characters are MSH, BHS or FHS is named by them; a field is split into repetitions,
components and subcomponents at the delimiters of MSH-1 and MSH-2; ``extract_field`` raises ``IndexError`` where
the path leaves the tree (a repetition past the last, a component of a value that has none), gives "" for a missing
component or subcomponent, and unescapes the value it returns with the library's own ``hl7.util.unescape``.
tests/unit/adapters/test_hl7_segments.py compares both on generated segments and messages.
"""

from __future__ import annotations

from dataclasses import dataclass

from hl7.util import unescape as _unescape

_HEADER_NAMES = ("MSH", "BHS", "FHS")


@dataclass(frozen=True, slots=True)
class Delimiters:
    """The library's separators string (segment, field, repetition, component, subcomponent) and escape character;
    ``hl7.util.unescape`` reads them from here as from one of its containers."""

    separators: str
    esc: str

    @property
    def field(self) -> str:
        return self.separators[1]

    @property
    def repetition(self) -> str:
        return self.separators[2]

    @property
    def component(self) -> str:
        return self.separators[3]

    @property
    def subcomponent(self) -> str:
        return self.separators[4]


@dataclass(slots=True)
class Segment:
    name: str  # the segment's first field as text, stripped (MSH, BHS, FHS: those three characters)
    fields: list[str]  # field texts as sent; fields[0] is the name field
    delimiters: Delimiters

    def __len__(self) -> int:
        return len(self.fields)


def delimiters_of(message: str) -> Delimiters:
    """The delimiters ``hl7.create_parse_plan`` takes from MSH-1 and MSH-2 of a stripped message text."""
    sep0 = message[3]
    seps = message[3 : message.find(sep0, 4)]
    separators = (
        "\r"
        + seps[0]
        + (seps[2] if len(seps) > 2 else "~")
        + (seps[1] if len(seps) > 1 else "^")
        + (seps[4] if len(seps) > 4 else "&")
    )
    return Delimiters(separators, seps[3] if len(seps) > 3 else "\\")


def split_message(text: str) -> list[Segment]:
    """The segments of a message text beginning with MSH, as ``hl7.parse`` splits it (the MSH segment's own fields
    are not split: nothing reads them from here)."""
    text = text.strip()
    delimiters = delimiters_of(text)
    chars = delimiters.separators[1:]
    sep = delimiters.field
    out: list[Segment] = []
    for segment in text.split("\r"):
        if not any(c in segment for c in chars):
            out.append(Segment(segment.strip(), [segment], delimiters))
        elif segment[:3] in _HEADER_NAMES:
            out.append(Segment(segment[:3], [segment[:3]], delimiters))
        else:
            fields = segment.split(sep)
            out.append(Segment(fields[0].strip(), fields, delimiters))
    return out


def extract(seg: Segment, field_no: int, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
    """``Segment.extract_field(1, field_no, rep, comp, sub)`` of the library (fields, repetitions, components and
    subcomponents numbered from 1), with its exceptions."""
    d = seg.delimiters
    field_no, rep, comp, sub = field_no or 1, rep or 1, comp or 1, sub or 1  # the library reads 0 as 1
    if field_no >= len(seg.fields):
        if rep == 1 and comp == 1 and sub == 1:
            return ""  # a non-present optional value
        raise IndexError("field not present")
    text = seg.fields[field_no]
    r, c, s = d.repetition, d.component, d.subcomponent
    if r not in text and c not in text and s not in text:
        if rep != 1:
            raise IndexError("repetition not present")
        if comp == 1 and sub == 1:
            return str(_unescape(d, text))
        raise IndexError("the field reaches a leaf before the path ends")
    reps = text.split(r)
    if rep > len(reps):
        raise IndexError("repetition not present")
    repetition = reps[rep - 1]
    if c not in repetition and s not in repetition:
        if comp > 1:
            if sub == 1:
                return ""
            raise IndexError("component not present")
        if sub == 1:
            return str(_unescape(d, repetition))
        raise IndexError("the field reaches a leaf before the path ends")
    comps = repetition.split(c)
    if comp > len(comps):
        if sub == 1:
            return ""
        raise IndexError("component not present")
    subs = comps[comp - 1].split(s)
    if sub <= len(subs):
        return str(_unescape(d, subs[sub - 1]))
    return ""


def get(seg: Segment, field_no: int, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
    """A value, stripped; "" where the path leaves the tree or the value cannot be unescaped."""
    try:
        value = extract(seg, field_no, rep, comp, sub)
    except (IndexError, KeyError, TypeError, ValueError):
        return ""
    return value.strip()


def get_components(seg: Segment, field_no: int, rep: int, count: int) -> list[str]:
    """``[get(seg, field_no, rep, c) for c in 1..count]`` with the field split once: where the path leaves the tree
    ``get`` gives "" (for a first subcomponent the library's leaf cases come to the same as splitting the text)."""
    d = seg.delimiters
    field_no, rep = field_no or 1, rep or 1
    if field_no >= len(seg.fields):
        return [""] * count
    reps = seg.fields[field_no].split(d.repetition)
    if rep > len(reps):
        return [""] * count
    parts = reps[rep - 1].split(d.component)
    out: list[str] = []
    for c in range(count):
        if c >= len(parts):
            out.append("")
            continue
        try:
            out.append(str(_unescape(d, parts[c].split(d.subcomponent)[0])).strip())
        except (IndexError, KeyError, TypeError, ValueError):
            out.append("")
    return out


def raw(seg: Segment, field_no: int) -> str:
    return seg.fields[field_no] if field_no < len(seg.fields) else ""


def reps(seg: Segment, field_no: int) -> int:
    """How many repetitions a field has (0 when empty; at most 100)."""
    n = 0
    while n < 100:
        try:
            extract(seg, field_no, n + 1, 1, 1)
        except (IndexError, KeyError, TypeError, ValueError):
            break
        n += 1
    if n == 1 and not raw(seg, field_no):
        return 0
    return n


def components(seg: Segment, field_no: int, rep: int) -> list[str]:
    """The components of one repetition (each its first subcomponent, unescaped, not stripped), without trailing
    empty ones; at most 29."""
    out: list[str] = []
    for comp in range(1, 30):
        try:
            value = extract(seg, field_no, rep, comp, 1)
        except (IndexError, KeyError, TypeError, ValueError):
            break
        out.append(value)
    while out and out[-1] == "":
        out.pop()
    return out
