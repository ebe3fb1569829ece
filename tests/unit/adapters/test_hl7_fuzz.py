"""Property tests: whatever bytes arrive, the HL7 path refuses them with an ``AdapterError`` (parse + map) and the
processor always answers an ACK (never an exception), in the sample messages' own character sets.

Inputs are arbitrary bytes, bytes behind a valid MSH prefix, and mutations of the golden sample messages: byte flips,
insertions, deletions and truncations, segment shuffles, duplications and removals, and random field values chosen to
reach the value types, dates, codes, identifiers and delimiters the mapping interprets.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hl7
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from adapters.codes import Coder, read_code_map
from adapters.config import AdapterConfig
from adapters.errors import AdapterError
from adapters.hl7v2.header import CHARSETS
from adapters.hl7v2.mapping import OruMapper
from adapters.hl7v2.message import parse
from adapters.hl7v2.processor import Hl7Processor
from adapters.push.outbox import Outbox
from catalog import Catalog

from .conftest import DATA, hosp_a_config

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")  # hl7.util

SAMPLES = {p.stem: p.read_bytes() for p in sorted((DATA / "hl7").glob("*.hl7"))}
FUZZ = settings(
    max_examples=int(os.environ.get("HR_FUZZ_EXAMPLES", "300")),  # raise it for a long local run
    deadline=None,
    database=None,  # nothing written into the working tree; a failure prints its reproducing example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def sample_encoding(raw: bytes) -> str:
    return "gb18030" if b"GB 18030" in raw.split(b"\r", 1)[0] else "utf-8"


# ---------------------------------------------------------------------------------------------------- set-up
@dataclass
class Env:
    strict: AdapterConfig
    lenient: AdapterConfig
    coder: Coder
    processors: dict[str, Hl7Processor]
    outbox: Outbox


class LastError(logging.Handler):
    """Keeps the exception the processor logged for its last 'internal error' answer."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.exc: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.exc = record.exc_info[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, catalog: Catalog) -> Iterator[Env]:
    """Module-scoped (so hypothesis may reuse it across examples): both policies sharing one real outbox."""
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    strict = hosp_a_config(tmp)
    lenient = hosp_a_config(tmp, hl7={"policy": "lenient", "max_message_bytes": 20_000})
    assert strict.codes.map_file is not None
    coder = Coder(catalog, "hosp-a", read_code_map(strict.codes.map_file, catalog))
    outbox = Outbox(strict.outbox.path)
    processors = {"strict": Hl7Processor(strict, coder, outbox), "lenient": Hl7Processor(lenient, coder, outbox)}
    yield Env(strict, lenient, coder, processors, outbox)
    outbox.close()


@pytest.fixture(scope="module")
def last_error() -> Iterator[LastError]:
    handler = LastError()
    logger = logging.getLogger("hr_adapter.hl7")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


# ---------------------------------------------------------------------------------------------------- strategies
DELIMITERS = ["|", "^", "~", "\\", "&", "\\F\\", "\\S\\", "\\E\\", "\\X0D\\", '""', "\x0b", "\x1c", "\n", "\t", " "]
TOKENS = """
    0 -0 +1 1. .5 1e5 NaN Infinity １２ ٣ < >= <^0.05 ^1^:^8 ^4.1^-^6.0 ^5^+ =^2 1^2^3^4^5^6^7
    F C X W D P N Q NM SN ST TX FT CE CWE CNE DT DTM TS TM RP ED CT RAD LAB
    A-123^^^HOSPA^MR 110105198503120020^^^CHN^NNCHN X^^^^MR~Y^^^^NI WBC^^L XYZ^未知^L 718-7^Hgb^LN GLU^^99LIS ^^L
    g/L^^UCUM ×10^9/L μmol/L 10*9/L 3.5-9.5 <1.00 ≤5 1- H~L ZZ~N null ORU^R01 ADT^A01 2.3 2.4 2.5.1 2.7 T KOI8-R 8859/1
    ASCII 20251103 2025110310 202511031015 20251103101500.1234+0800 20251103+2500 20251340 20250230 19851340 198513
    2025 202513 abcd 0745 0799 2460 99999999999999
    """  # whitespace-separated field values
INTERESTING = [
    "",
    "9" * 400,
    "113014^Study Instance UID^DCM",
    "GB 18030-2000",
    "UNICODE UTF-8",
    *TOKENS.split(),
]
FIELD_VALUES = st.one_of(
    st.sampled_from(INTERESTING),
    st.text(max_size=16),
    st.text(alphabet="0123456789", min_size=1, max_size=16),
    st.text(alphabet="0123456789+-.^~&\\", min_size=1, max_size=20),
    st.lists(st.sampled_from([*INTERESTING[:45], *DELIMITERS]), min_size=1, max_size=5).map("".join),
)
SEGMENT_NAMES = ["MSH", "PID", "PV1", "ORC", "OBR", "OBX", "NTE", "ZXX", "FHS", "BHS", "MSA", "ERR", "EVN"]


@st.composite
def field_mutations(draw: st.DrawFn) -> bytes:
    """A sample with 1-4 fields (anywhere, including past the last one) set to a drawn value."""
    raw = draw(st.sampled_from(list(SAMPLES.values())))
    encoding = sample_encoding(raw)
    segments = raw.decode(encoding).split("\r")
    for _ in range(draw(st.integers(1, 4))):
        index = draw(st.integers(0, len(segments) - 1))
        fields = segments[index].split("|")
        position = draw(st.integers(2 if index == 0 else 1, len(fields) + 2))
        fields += [""] * (position + 1 - len(fields))
        fields[position] = draw(FIELD_VALUES)
        segments[index] = "|".join(fields)
    return "\r".join(segments).encode(encoding, "replace")


@st.composite
def segment_mutations(draw: st.DrawFn) -> bytes:
    """A sample with its segments shuffled, duplicated, removed or renamed."""
    raw = draw(st.sampled_from(list(SAMPLES.values())))
    segments = [s for s in raw.split(b"\r") if s]
    op = draw(st.sampled_from(["shuffle", "shuffle-body", "duplicate", "remove", "rename"]))
    if op == "shuffle":
        segments = list(draw(st.permutations(segments)))
    elif op == "shuffle-body":
        segments = [segments[0], *draw(st.permutations(segments[1:]))]
    elif op == "duplicate":
        segments.insert(draw(st.integers(0, len(segments))), draw(st.sampled_from(segments)))
    elif op == "remove":
        del segments[draw(st.integers(0, len(segments) - 1))]
    else:
        index = draw(st.integers(0, len(segments) - 1))
        segments[index] = draw(st.sampled_from(SEGMENT_NAMES)).encode() + segments[index][3:]
    separator = draw(st.sampled_from([b"\r", b"\n", b"\r\n"]))
    return separator.join(segments) + draw(st.sampled_from([b"", separator]))


@st.composite
def byte_mutations(draw: st.DrawFn) -> bytes:
    """A sample with 1-6 random byte flips, insertions, deletions or a truncation."""
    data = bytearray(draw(st.sampled_from(list(SAMPLES.values()))))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if op == "flip":
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(
                st.binary(min_size=1, max_size=8)
                | st.sampled_from([b"|", b"^", b"~", b"\\", b"&", b"\r", b"\n", b"MSH|", b"\xef\xbb\xbf", b"\xe4\xb8"])
            )
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 24))]
        else:
            del data[at:]
    return bytes(data)


ARBITRARY = st.binary(max_size=2000) | st.binary(max_size=400).map(lambda b: b"MSH|^~\\&|" + b)
MUTATED = st.one_of(field_mutations(), segment_mutations(), byte_mutations())


# ---------------------------------------------------------------------------------------------------- properties
def note(text: str) -> None:
    """Count an outcome in hypothesis' statistics (``--hypothesis-show-statistics``) when under hypothesis."""
    if currently_in_test_context():
        event(text)


def parse_and_map(raw: bytes, config: AdapterConfig, coder: Coder) -> None:
    try:
        message = parse(raw, default_encoding=config.hl7.encoding, processing_ids=tuple(config.hl7.processing_ids))
        OruMapper(config, coder).map(message)
    except AdapterError as exc:
        note(f"refused: {type(exc).__name__} {getattr(exc, 'error_code', '')}")
        return
    note("mapped")


def unescape(text: str, sep: str, enc: str) -> str:
    """HL7 escape sequences undone (with '-' as the escape character, 'UTF-8' travels as 'UTF-E-8')."""
    comp, rep, esc, sub = enc[:4]
    for code, char in (("F", sep), ("S", comp), ("T", sub), ("R", rep), ("E", esc)):
        text = text.replace(f"{esc}{code}{esc}", char)
    return text


def ack_text(ack: bytes) -> str:
    """The ACK decoded with its MSH-18 (which mirrors the message's); without one, UTF-8 — or, when the sender's
    bytes were not UTF-8 at all, the bytes as they came (the ACK echoes MSH-3..6 as sent)."""
    first = ack.split(b"\r", 1)[0].decode("latin-1")
    fields = first.split(first[3])
    charset = unescape(fields[17], first[3], fields[1]).strip().upper() if len(fields) > 17 else ""
    if charset:
        return ack.decode(CHARSETS[charset] or "utf-8")
    try:
        return ack.decode("utf-8")
    except UnicodeDecodeError:
        return ack.decode("latin-1")


def check_handle(env: Env, last_error: LastError, raw: bytes, policy: str) -> None:
    processor = env.processors[policy]
    before = env.outbox.pending_count()
    last_error.exc = None
    result = processor.handle(raw, "fuzz")  # must not raise: any exception fails the test as it is
    assert result.code in ("AA", "AE", "AR"), result
    note(f"ACK {result.code}")
    message = hl7.parse(ack_text(result.ack))
    names = [str(s[0]) for s in message]
    assert names == ["MSH", "MSA"] + (["ERR"] if result.code != "AA" else []), names
    msa = message.segment("MSA")
    assert str(msa[1]) == result.code
    if result.code == "AA":
        assert str(msa[2]), "an accepted message has a control id to echo"
        assert result.queued != result.duplicate
    after = env.outbox.pending_count()
    assert after == before + (1 if result.queued else 0), (before, after, result)
    if result.text == "internal error":  # the processor's last resort: an exception escaped parse/map
        assert last_error.exc is not None
        raise AssertionError(f"the processor hit an unexpected error: {last_error.exc!r}") from last_error.exc


@FUZZ
@given(raw=ARBITRARY, policy=st.sampled_from(["strict", "lenient"]))
def test_arbitrary_bytes_raise_only_adapter_errors(env: Env, raw: bytes, policy: str) -> None:
    parse_and_map(raw, env.strict if policy == "strict" else env.lenient, env.coder)


@FUZZ
@given(raw=MUTATED, policy=st.sampled_from(["strict", "lenient"]))
def test_mutated_samples_raise_only_adapter_errors(env: Env, raw: bytes, policy: str) -> None:
    parse_and_map(raw, env.strict if policy == "strict" else env.lenient, env.coder)


@FUZZ
@given(raw=ARBITRARY | MUTATED, policy=st.sampled_from(["strict", "lenient"]))
def test_processor_always_answers_a_parseable_ack(env: Env, last_error: LastError, raw: bytes, policy: str) -> None:
    check_handle(env, last_error, raw, policy)


def test_the_properties_can_fail(env: Env, last_error: LastError, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checks above are not vacuous: a mapper that crashes is caught by both, and an accepted sample passes."""
    check_handle(env, last_error, SAMPLES["oru_cbc_final"], "strict")
    assert env.outbox.pending_count() >= 1

    def crash(self: Any, message: Any) -> Any:
        raise KeyError("boom")

    monkeypatch.setattr(OruMapper, "map", crash)
    with pytest.raises(KeyError):
        parse_and_map(SAMPLES["oru_cbc_final"], env.strict, env.coder)
    with pytest.raises(AssertionError, match="unexpected error"):
        check_handle(env, last_error, SAMPLES["oru_cbc_corrected"], "strict")
