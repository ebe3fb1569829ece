"""The JSON text helpers the write path relies on: duplicate member names refused whatever their spelling, and the
exact text of each Bundle entry's resource found in one pass."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.errors import BadRequestError
from registry.fhir.json_text import DuplicateKeyError, loads_document
from registry.services.ingest.entries import entry_resource_texts

KEYS = st.text(alphabet=st.sampled_from('ab":\\{}[], é中\n'), min_size=1, max_size=4)
SCALARS = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=6)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
                    max_leaves=12)  # fmt: skip


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "a": 2}',
        '{"id": "x", "\\u0069d": "y"}',  # one name in two spellings
        '{"entry": [{"resource": {"status": "final", "status" : "amended"}}]}',
        '[1, {"k": {"x": 1}, "k": 2}]',
        '{"a": "\\"b\\": 1", "a"\n:\t3}',  # a value that looks like a member, then the real duplicate
        '{"a": ":x", "a": ":y"}',  # no backslash: the fast count, with values that begin with a colon
        '{"a":{"b":":","b":":"}}',
        '{"a" : 1, "a": 2}',  # a name spaced from its colon
    ],
)
def test_a_duplicate_member_name_is_refused_and_named(text: str) -> None:
    with pytest.raises(DuplicateKeyError, match="twice"):
        loads_document(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"a": "\\"a\\": 1", "b": ["a", "a"], "c": {"a": 1}}',  # the same name in other objects, strings like names
        '{"k": "x\\\\", "k2": ":"}',  # an escaped backslash ending a string, a colon as a value
        '{"\\u4e2d": 1, "中文": 2}',
        '{"a": ":x", "b": [":", " :", "\\u003a"], ":": ":"}',
        '{"a" : ":x", "b": ": y"}',
    ],
)
def test_names_that_only_look_alike_are_accepted(text: str) -> None:
    assert loads_document(text) == orjson.loads(text)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(JSON, st.sampled_from([None, 1, 2]))
def test_any_document_parses_as_orjson_reads_it(document: Any, indent: int | None) -> None:
    text = json.dumps(document, indent=indent, ensure_ascii=bool(indent == 2))
    assert loads_document(text) == orjson.loads(text)
    assert loads_document(text.encode()) == orjson.loads(text)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.dictionaries(KEYS, JSON, min_size=1, max_size=4), st.data())
def test_a_repeated_member_anywhere_is_found(members: dict[str, Any], data: st.DataObject) -> None:
    key = data.draw(st.sampled_from(sorted(members)))
    body = ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in members.items())
    text = '{"outer": [{' + body + f", {json.dumps(key)}: 0" + "}]}"
    with pytest.raises(DuplicateKeyError):
        loads_document(text)


PLAIN_KEYS = st.text(alphabet=st.sampled_from("ab: é中"), min_size=1, max_size=4)  # no quote, no backslash
PLAIN = st.recursive(st.integers() | PLAIN_KEYS, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(PLAIN_KEYS, inner, max_size=3), max_leaves=12)  # fmt: skip


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.dictionaries(PLAIN_KEYS, PLAIN, min_size=1, max_size=4), st.data(), st.booleans())
def test_without_escapes_a_repeated_member_is_found_and_none_is_imagined(
    members: dict[str, Any], data: st.DataObject, repeat: bool
) -> None:
    key = data.draw(st.sampled_from(sorted(members)))
    body = ",".join(f"{json.dumps(k, ensure_ascii=False)}:{json.dumps(v, ensure_ascii=False)}"
                    for k, v in members.items())  # fmt: skip
    extra = f',{json.dumps(key, ensure_ascii=False)}:":{key}"' if repeat else ""
    text = "[{" + body + extra + "}]"
    assert "\\" not in text
    if repeat:
        with pytest.raises(DuplicateKeyError):
            loads_document(text)
    else:
        assert loads_document(text) == orjson.loads(text)


def _bundle_text(resources: list[Any], indent: int | None) -> str:
    entries = [{"fullUrl": f"urn:uuid:{i}", "resource": r, "request": {"method": "POST", "url": "Observation"}}
               for i, r in enumerate(resources)]  # fmt: skip
    entries.insert(1, {"request": {"method": "GET", "url": "Patient?x=1"}})  # an entry without a resource
    return json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries, "z": [1, {"a": "]"}]},
                      indent=indent, ensure_ascii=False)  # fmt: skip


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.dictionaries(KEYS, JSON, max_size=3), min_size=1, max_size=4), st.sampled_from([None, 2]))
def test_each_entry_resource_keeps_its_exact_text(resources: list[Any], indent: int | None) -> None:
    text = _bundle_text(resources, indent)
    found = entry_resource_texts(text)
    positions = [0, *range(2, len(resources) + 1)]  # entry 1 is the GET without a resource
    assert sorted(found) == positions
    for pos, resource in zip(positions, resources, strict=True):
        assert orjson.loads(found[pos]) == resource
        assert found[pos] in text  # the bytes as sent, whitespace and all


def test_numbers_keep_their_spelling_in_the_entry_text() -> None:
    text = '{"resourceType":"Bundle","entry":[ {"resource" : {"valueQuantity": {"value": 1.50}} } ]}'
    assert entry_resource_texts(text) == {0: '{"valueQuantity": {"value": 1.50}}'}


@pytest.mark.parametrize("text", ['{"entry": [{"resource": {"a": 1}', '{"entry": [1 2]}', '{"entry": [{"a" 1}]}'])
def test_a_malformed_bundle_is_a_clear_400(text: str) -> None:
    with pytest.raises(BadRequestError, match="not well-formed"):
        entry_resource_texts(text)
