"""adapters/hl7v2/segments.py gives what the ``hl7`` library gives: the same segment names, the same value (or the
same exception) for every field path, and the same parsed message from ``parse`` as with ``hl7.parse`` and
``extract_field``, on generated segments with any delimiters and escapes, on the samples and on their mutations."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import hl7
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.errors import AdapterError
from adapters.hl7v2 import message as message_module
from adapters.hl7v2 import segments
from adapters.hl7v2.message import parse

from .test_hl7_fuzz import FUZZ, MUTATED, SAMPLES, sample_encoding

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")  # hl7.util

PROPERTY = FUZZ  # the HL7 fuzz tests' settings (HR_FUZZ_EXAMPLES)


# ---------------------------------------------------------------------------------------------------- the library's
class LibSegment:
    """A segment of ``hl7.parse`` behind the names message.py reads."""

    def __init__(self, seg: Any) -> None:
        self.seg = seg
        self.name = str(seg[0]).strip()


def lib_get(seg: LibSegment, field_no: int, rep: int = 1, comp: int = 1, sub: int = 1) -> str:
    try:
        value = seg.seg.extract_field(1, field_no, rep, comp, sub)
    except (IndexError, KeyError, TypeError, ValueError):
        return ""
    return str(value).strip() if value is not None else ""


def lib_raw(seg: LibSegment, field_no: int) -> str:
    try:
        return str(seg.seg[field_no]) if field_no < len(seg.seg) else ""
    except (IndexError, TypeError):
        return ""


def lib_reps(seg: LibSegment, field_no: int) -> int:
    n = 0
    while n < 100:
        try:
            seg.seg.extract_field(1, field_no, n + 1, 1, 1)
        except (IndexError, KeyError, TypeError, ValueError):
            break
        n += 1
    if n == 1 and not lib_raw(seg, field_no):
        return 0
    return n


def lib_components(seg: LibSegment, field_no: int, rep: int) -> list[str]:
    out: list[str] = []
    for comp in range(1, 30):
        try:
            value = seg.seg.extract_field(1, field_no, rep, comp, 1)
        except (IndexError, KeyError, TypeError, ValueError):
            break
        out.append(str(value))
    while out and out[-1] == "":
        out.pop()
    return out


@contextmanager
def with_the_library() -> Iterator[None]:
    """message.py reading through ``hl7.parse`` and ``extract_field``, as it did."""
    names = ("_get", "_reps", "_components", "_get_components", "segments")
    saved = {name: getattr(message_module, name) for name in names}
    message_module._get = lib_get  # type: ignore[assignment]
    message_module._reps = lib_reps  # type: ignore[assignment]
    message_module._components = lib_components  # type: ignore[assignment]
    message_module._get_components = lambda seg, field_no, rep, count: [  # type: ignore[assignment]
        lib_get(seg, field_no, rep, c) for c in range(1, count + 1)
    ]
    message_module.segments = SimpleNamespace(  # type: ignore[assignment]
        split_message=lambda text: [LibSegment(s) for s in hl7.parse(text)]
    )
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(message_module, name, value)


# ---------------------------------------------------------------------------------------------------- generated
DELIMITER_SETS = ["|^~\\&", "|^~\\&#", "#$%*@", "|~^-&", "!@#$%", "|^~\\"]
PIECES = [
    "A", "b", "1", " ", "  ", "\t", "白", "\u3000", "", "\\F\\", "\\S\\", "\\T\\", "\\R\\", "\\E\\", "\\.br\\",
    "\\.brX\\", "\\.sp3\\", "\\X0D0A\\", "\\XZZ\\", "\\H\\", "\\N\\", "\\Zabc\\", "\\\\", "\\", "\\C2842\\", "\\M\\",
    '""', "MSH", "BHS", "FHS", "PID", "OBX",
]  # fmt: skip


@st.composite
def messages(draw: st.DrawFn) -> str:
    chars = draw(st.sampled_from(DELIMITER_SETS))
    sep, enc = chars[0], chars[1:]
    delims = [sep, *enc, "\r", "\n"]
    pieces = st.sampled_from([*PIECES, *delims]) | st.text(max_size=3)
    body = []
    for _ in range(draw(st.integers(0, 4))):
        parts = draw(st.lists(pieces, max_size=30))
        body.append(draw(st.sampled_from(["PID", "OBX", "NTE", "MSH", "BHS", "ZZZ", ""])) + "".join(parts))
    text = f"MSH{sep}{enc}{sep}LIS{sep}" + "\r".join(["", *body])
    # as message.py hands it over: blank segments dropped, CR only
    return "\r".join(s for s in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if s.strip())


def outcome(seg: Any, field_no: int, rep: int, comp: int, sub: int, lib: bool) -> Any:
    try:
        if lib:
            return str(seg.extract_field(1, field_no, rep, comp, sub))
        return segments.extract(seg, field_no, rep, comp, sub)
    except Exception as exc:  # the exception type is part of the answer
        return type(exc)


@PROPERTY
@given(text=messages())
def test_every_field_path_reads_as_with_the_library(text: str) -> None:
    ours = segments.split_message(text)
    theirs = list(hl7.parse(text))
    assert len(ours) == len(theirs)
    for mine, lib in zip(ours[1:], theirs[1:], strict=True):
        wrapped = LibSegment(lib)
        assert mine.name == wrapped.name
        if mine.name in ("MSH", "BHS", "FHS"):
            continue  # header segments: only the name is read
        assert len(mine) == len(lib)
        for field_no in range(0, len(lib) + 2):
            assert segments.raw(mine, field_no) == lib_raw(wrapped, field_no)
            assert segments.reps(mine, field_no) == lib_reps(wrapped, field_no)
            for rep in range(1, 4):
                assert segments.components(mine, field_no, rep) == lib_components(wrapped, field_no, rep)
                assert segments.get_components(mine, field_no, rep, 7) == [
                    lib_get(wrapped, field_no, rep, comp) for comp in range(1, 8)
                ]
                for comp in range(1, 6):
                    for sub in range(1, 4):
                        assert outcome(mine, field_no, rep, comp, sub, False) == outcome(
                            lib, field_no, rep, comp, sub, True
                        ), (field_no, rep, comp, sub)
                        assert segments.get(mine, field_no, rep, comp, sub) == lib_get(
                            wrapped, field_no, rep, comp, sub
                        )


def parsed(raw: bytes) -> Any:
    try:
        return parse(raw, default_encoding=sample_encoding(raw))
    except AdapterError as exc:
        return (type(exc).__name__, str(exc), getattr(exc, "error_code", None), getattr(exc, "location", None))


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_samples_parse_as_with_the_library(name: str) -> None:
    ours = parsed(SAMPLES[name])
    with with_the_library():
        theirs = parsed(SAMPLES[name])
    assert ours == theirs
    assert not isinstance(ours, tuple) or name in ("oru_value_types",), ours


@PROPERTY
@given(raw=MUTATED)
def test_mutated_samples_parse_as_with_the_library(raw: bytes) -> None:
    ours = parsed(raw)
    with with_the_library():
        theirs = parsed(raw)
    assert ours == theirs
