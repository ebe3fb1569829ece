"""The mask's shortcut (strings that cannot hold an identifier skip the compiled pattern) answers exactly as the
pattern does, for any string: escapes, separators, either case, the letters that match ASCII ones when case is
ignored, non-ASCII text."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from registry.services.ingest.masking import NationalIdMask

IDS = ["11010519491231002X", "E1234567", "440524188001010014"]
_PIECES = st.sampled_from(
    [*"0123456789xXeE", " ", "-", "+", "\u00a0", "%31", "%3", "&#49;", "&#x31;", "&#X31;", "\\u0031", "\\", "&", "%",
     "\u0130", "\u0131", "\u212a", "\u017f", "张", "三", "ß", "ﬀ", "１", "a", ".", "/"]
)  # fmt: skip


def _pattern_only(mask: NationalIdMask, value: str) -> str:
    """What the mask answered before the shortcut: every pattern applied to every string."""
    whole = mask._stand_in.get(re.sub(r"\s+", "", value).upper())
    if whole is not None:
        return mask.string(value)  # the whole-value rule is the same either way
    for pattern, stand_in in mask._patterns:
        value = pattern.sub(stand_in, value)
    return value


@settings(max_examples=400, deadline=None)
@given(
    ident=st.sampled_from(IDS),
    pieces=st.lists(_PIECES, max_size=12),
    spelled=st.lists(st.sampled_from(["plain", "lower", "dashed", "percent", "entity"]), min_size=0, max_size=2),
    tail=st.lists(_PIECES, max_size=6),
)
def test_the_shortcut_answers_as_the_pattern(
    ident: str, pieces: list[str], spelled: list[str], tail: list[str]
) -> None:
    forms = {
        "plain": ident,
        "lower": ident.lower(),
        "dashed": "-".join(ident[i : i + 3] for i in range(0, len(ident), 3)),
        "percent": "".join(f"%{ord(c):02x}" for c in ident),
        "entity": "".join(f"&#{ord(c)};" for c in ident),
    }
    value = "".join(pieces) + "".join(forms[s] for s in spelled) + "".join(tail)
    mask = NationalIdMask([ident])
    assert mask.string(value) == _pattern_only(mask, value)
    assert mask.holds(value) == any(p.search(value) for p, _ in mask._patterns)


def test_a_string_without_the_identifier_never_compiles_the_pattern() -> None:
    mask = NationalIdMask(["11010519491231002X"])
    for value in ("张三", "male", "1949-12-31", "https://hosp-a.example.cn/mrn", "Patient/0b1c-22", "x" * 40):
        assert mask.string(value) == value
    assert mask._compiled is None
    assert mask.string("ID 110105-19491231-002x") == "ID 110***********002X"
    assert mask._compiled is not None
