"""Several outbox messages sent as one transaction Bundle, so a backlog drains in few registry transactions
(FHIR R4 http.html §3.1.0.11.2 "Transaction Processing Rules": all entries succeed or fail together).

Why one merged transaction rather than a FHIR ``batch``: a message is itself a transaction (a report with its
Observations and Patient must commit together), R4 batch entries are independent single interactions, and a Bundle
is not an entry a batch can carry as a nested transaction. A merged transaction keeps each message atomic (the whole
merge is), and a refusal is taken apart by the deliverer (adapters/push/delivery.py) until every message has its own
outcome — a bad message never dead-letters its neighbours.

What may share one Bundle:

- at most one message per order key (the deliverer hands over only the first in line of each key, so a report's
  versions still reach the registry one after the other, in queue order);
- an entry two messages carry identically (same fullUrl, request and resource — the Patient of two reports of one
  person) is sent once; both messages' references to its fullUrl then point at it;
- a message with an entry that shares its fullUrl or its target (request URL, or a POST's ``ifNoneExist``) with a
  different entry of the Bundle waits for another Bundle: R4 §3.1.0.11.2 makes a transaction whose entries overlap in
  the resources they identify fail, and the two versions' order would be lost;
- at most ``max_entries`` entries and ``max_bytes`` bytes (the registry refuses larger Bundles with 413).

A message that is not a transaction Bundle the merge can read goes alone, its body untouched (the registry's answer
will say what is wrong with it); so does every message of a batch of one.

Message bodies are parsed with decimals as ``Decimal`` and re-serialized the way they were written
(adapters/fhir.py ``dumps``), so ``5.20`` stays ``5.20`` in the registry's stored text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from adapters.fhir import dumps
from adapters.push.outbox import Pending

_ENTRY_RE = re.compile(r"Bundle\.entry\[(\d+)\]")
_CLASH = -1


@dataclass(frozen=True, slots=True)
class Batch:
    """Messages sent in one request. ``owners[i]`` are the positions (in ``messages``) of the messages that entry i of
    ``body`` came from (more than one for a shared entry)."""

    messages: tuple[Pending, ...]
    body: bytes
    owners: tuple[frozenset[int], ...] = ()

    @property
    def ids(self) -> list[int]:
        return [m.id for m in self.messages]

    def suspect(self, outcome: str) -> int | None:
        """The position of the one message the registry's refusal points at (its OperationOutcome names the entry,
        ``Bundle.entry[i]``), or None when it names none or an entry several messages share."""
        m = _ENTRY_RE.search(outcome)
        if m is None or len(self.messages) < 2:
            return None
        index = int(m.group(1))
        if index >= len(self.owners) or len(self.owners[index]) != 1:
            return None
        return next(iter(self.owners[index]))


def alone(message: Pending) -> Batch:
    return Batch((message,), message.body, ())


@dataclass(frozen=True, slots=True)
class _Entry:
    text: bytes
    full_url: str | None
    target: tuple[str, ...] | None


def _entries(message: Pending) -> list[_Entry] | None:
    """The message's entries, or None when it is not a transaction Bundle with entries that the merge can read."""
    try:
        doc = json.loads(message.body, parse_float=Decimal, parse_constant=_refuse)
    except (ValueError, RecursionError):
        return None  # (NaN and Infinity too: not JSON, and not what the message says once re-serialized)
    if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle" or doc.get("type") != "transaction":
        return None
    if set(doc) - {"resourceType", "type", "entry"}:
        return None  # an id, meta or other member the merge would drop
    entries = doc.get("entry")
    if not isinstance(entries, list) or not entries:
        return None
    out: list[_Entry] = []
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("request"), dict):
            return None
        request = e["request"]
        method = str(request.get("method", "")).upper()
        target: tuple[str, ...] | None = None
        if method in ("PUT", "DELETE", "PATCH"):
            target = ("url", str(request.get("url", "")).split("/_history", 1)[0])
        elif method == "POST" and request.get("ifNoneExist"):
            target = ("ifNoneExist", str(request.get("url", "")), str(request["ifNoneExist"]))
        full_url = e.get("fullUrl") if isinstance(e.get("fullUrl"), str) else None
        try:
            text = dumps(e)
        except TypeError:  # an integer beyond 64 bits: the message goes alone, as it was written
            return None
        out.append(_Entry(text, full_url, target))
    return out


def _refuse(constant: str) -> Any:
    raise ValueError(constant)


@dataclass(slots=True)
class _Builder:
    max_entries: int
    max_bytes: int
    messages: list[Pending] = field(default_factory=list)
    texts: list[bytes] = field(default_factory=list)
    owners: list[set[int]] = field(default_factory=list)
    by_url: dict[str, int] = field(default_factory=dict)
    by_target: dict[tuple[str, ...], int] = field(default_factory=dict)
    size: int = 0

    def _shared(self, e: _Entry) -> int | None:
        """The index of an identical entry already in the Bundle, None when the entry is new, ``_CLASH`` when it
        shares its fullUrl or target with a different entry."""
        hits = {i for i in (self.by_url.get(e.full_url or ""), self.by_target.get(e.target or ())) if i is not None}
        if not hits:
            return None
        if len(hits) == 1:
            (i,) = hits
            if self.texts[i] == e.text:
                return i
        return _CLASH

    def add(self, message: Pending, entries: list[_Entry]) -> bool:
        shared = [self._shared(e) for e in entries]
        if _CLASH in shared:
            return False
        new = [e for e, s in zip(entries, shared, strict=True) if s is None]
        grow = sum(len(e.text) + 1 for e in new)
        if self.messages and (len(self.texts) + len(new) > self.max_entries or self.size + grow > self.max_bytes):
            return False
        position = len(self.messages)
        self.messages.append(message)
        self.size += grow
        for e, s in zip(entries, shared, strict=True):
            if s is not None:
                self.owners[s].add(position)
                continue
            index = len(self.texts)
            self.texts.append(e.text)
            self.owners.append({position})
            if e.full_url is not None:
                self.by_url.setdefault(e.full_url, index)
            if e.target is not None:
                self.by_target.setdefault(e.target, index)
        return True

    def batch(self) -> Batch:
        if len(self.messages) == 1:
            return alone(self.messages[0])
        body = b'{"resourceType":"Bundle","type":"transaction","entry":[' + b",".join(self.texts) + b"]}"
        return Batch(tuple(self.messages), body, tuple(frozenset(o) for o in self.owners))


def batches(messages: Sequence[Pending], *, size: int, max_entries: int = 500, max_bytes: int = 4 << 20) -> list[Batch]:
    """Messages (each the first in line of its order key, oldest first) grouped into Bundles of at most ``size``
    messages, in the order of their oldest message."""
    if size <= 1:
        return [alone(m) for m in messages]
    out: list[tuple[int, Batch]] = []
    building: list[tuple[int, _Builder]] = []
    for n, message in enumerate(messages):
        entries = _entries(message)
        if entries is None:
            out.append((n, alone(message)))
            continue
        for start, b in building:
            if b.add(message, entries):
                if len(b.messages) >= size:
                    building.remove((start, b))
                    out.append((start, b.batch()))
                break
        else:
            b = _Builder(max_entries, max_bytes)
            b.add(message, entries)
            building.append((n, b))
    out += [(start, b.batch()) for start, b in building]
    return [batch for _start, batch in sorted(out, key=lambda x: x[0])]


def merge(messages: Sequence[Pending]) -> list[Batch]:
    """Part of a batch again as one Bundle (a part fits as the whole did: one batch, unless the part is empty)."""
    return batches(messages, size=len(messages), max_entries=1 << 30, max_bytes=1 << 62)
