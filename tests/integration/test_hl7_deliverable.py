"""Property: an ORU^R01 the adapter acknowledges AA is a message the registry takes — pushed as hospital A (its
namespaces, the live API, on SQLite and PostgreSQL) its transaction Bundle is 200, or at most waits for a patient or
study the registry does not know yet (a not-found the delivery retries); never a refusal that would dead-letter it
after the LIS heard AA. Inputs: the golden samples mutated field by field, segment by segment and byte by byte (the
fuzz strategies of tests/unit/adapters/test_hl7_fuzz.py), both policies, each example with its own MRN, national
identifier and report numbers; and the messages the strict policy used to refuse for their units."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.codes import Coder, load_catalog, read_code_map
from adapters.hl7v2.processor import Hl7Processor
from adapters.push.outbox import Outbox
from tests.integration.conftest import Api, resident_id
from tests.unit.adapters.conftest import DATA, hosp_a_config
from tests.unit.adapters.test_hl7_fuzz import MUTATED

NID = b"110105198503120020"
_seed = itertools.count(7000)
SLOW = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="module")
def lis(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Hl7Processor]:
    tmp: Path = tmp_path_factory.mktemp("lis")
    catalog = load_catalog()
    out: dict[str, Hl7Processor] = {}
    for policy in ("strict", "lenient"):
        config = hosp_a_config(tmp / policy, hl7={"policy": policy, "max_message_bytes": 50_000})
        (tmp / policy).mkdir()
        assert config.codes.map_file is not None
        coder = Coder(catalog, "hosp-a", read_code_map(config.codes.map_file, catalog))
        out[policy] = Hl7Processor(config, coder, Outbox(config.outbox.path))
    return out


def fresh(raw: bytes) -> bytes:
    """The message with an MRN, national identifier and report numbers of its own (so examples never collide)."""
    n = next(_seed)
    return (
        raw.replace(b"A-123", f"A-{n}".encode())
        .replace(b"A-456", f"A-{n}".encode())
        .replace(NID, resident_id(n).encode())
        .replace(b"R-2025-", f"R-{n}-".encode())
        .replace(b"RPT-CT-", f"RPT-{n}-".encode())
    )


def push(api: Api, lis: Hl7Processor, raw: bytes) -> tuple[str, int | None, dict[str, Any] | None]:
    """The ACK code, and for an AA the registry's status and answer to the queued Bundle."""
    outbox = lis.outbox
    before = {p.id for p in outbox.ready(10_000, set())}
    result = lis.handle(raw, "property")
    if result.code != "AA" or not result.queued:
        return result.code, None, None
    [queued] = [p for p in outbox.ready(10_000, set()) if p.id not in before]
    outbox.delivered(queued.id)
    r = api.post("/fhir", queued.body, who="hosp-a-system")
    return result.code, r.status_code, r.json()


def taken(status: int | None, answer: dict[str, Any] | None) -> bool:
    if status == 200:
        return True
    codes = {i.get("code") for i in (answer or {}).get("issue", [])}
    return status in (404, 412, 422) and "not-found" in codes  # waits for a patient or study (delivery retries)


@st.composite
def identity_mutations(draw: st.DrawFn) -> bytes:
    """The CBC sample with PID-3 drawn: national identifiers of any length and check character, MRNs that hold
    them, a second one, none; OBR-3 repeated or not (``fresh`` leaves drawn values alone)."""
    raw = (DATA / "hl7" / "oru_cbc_final.hl7").read_bytes()
    digits = draw(st.text("0123456789", min_size=15, max_size=19))
    national = digits + draw(st.sampled_from(["", "X", "x", "1"]))
    mrn = draw(st.sampled_from(["B-{n}", national, f"M{national}", "{n}"]))
    nationals = draw(st.sampled_from([0, 1, 2]))
    pid3 = [f"{mrn}^^^HOSPA^MR", *[f"{national}^^^CHN^NNCHN", f"{digits}^^^CHN^NI"][:nationals]]
    text = raw.decode().replace("A-123^^^HOSPA^MR~110105198503120020^^^CHN^NNCHN", "~".join(pid3))
    if draw(st.booleans()):
        text += text.split("\r")[4] + "\r" + text.split("\r")[5] + "\r"  # the OBR (same OBR-3) and an OBX again
    return text.replace("{n}", str(next(_seed))).encode()


@SLOW
@given(raw=MUTATED | identity_mutations(), policy=st.sampled_from(["strict", "lenient"]))
def test_an_acknowledged_message_is_taken_by_the_registry(
    api: Api, lis: dict[str, Hl7Processor], raw: bytes, policy: str
) -> None:
    code, status, answer = push(api, lis[policy], fresh(raw))
    if code == "AA":
        assert taken(status, answer), (status, orjson.dumps(answer).decode()[:600])


@pytest.mark.parametrize("name", sorted(p.name for p in (DATA / "hl7").glob("*.hl7")))
def test_every_golden_sample_is_taken(api: Api, lis: dict[str, Hl7Processor], name: str) -> None:
    raw = fresh((DATA / "hl7" / name).read_bytes())
    code, status, answer = push(api, lis["strict"], raw)
    if b"NNCHN" not in raw:  # the default refuses a PID without a national identifier
        assert code == "AE"
        return
    assert code == "AA"
    assert taken(status, answer), answer


@pytest.mark.parametrize("unit", ["mg/g", "{INR}", "g/(24.h)", "mg/L{FEU}", "[pH]", "mmol/mol", "mU/L", "×10^9/L"])
def test_the_units_are_taken(api: Api, lis: dict[str, Hl7Processor], unit: str) -> None:
    raw = (DATA / "hl7" / "oru_cbc_final.hl7").read_bytes().replace(b"|10\\S\\9/L^10\\S\\9/L|", f"|{unit}|".encode())
    code, status, answer = push(api, lis["strict"], fresh(raw))
    assert (code, status) == ("AA", 200), answer
