"""The README walkthrough's files agree with the demo region (registry/services/demo/people.py): the sample ORU's
patient is the demo's A-123 at hosp-a (name, sex, birth date, national identifier), with the reference ranges of her
sex; the example configuration reads the registry's URL from HR_REGISTRY_URL (default the ./scripts/serve one)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from adapters.config import load_config
from adapters.hl7v2.message import parse
from registry.services.demo.people import _patients

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_the_sample_message_is_the_demo_patient() -> None:
    demo = _patients(random.Random(20261122), 1)[0]  # the seed the demo region loads with
    message = parse((EXAMPLES / "hl7" / "cbc-a-123.hl7").read_bytes())
    [group] = message.groups
    p = group.patient
    assert demo.mrns["hosp-a"] == "A-123"
    assert [(i.value, i.type) for i in p.identifiers] == [("A-123", "MR"), (demo.national_id, "NNCHN")]
    assert (p.family, p.given, p.sex, p.birth) == (demo.family, [demo.given], "M" if demo.male else "F",
                                                   f"{demo.birth:%Y%m%d}")  # fmt: skip
    hgb = next(o for o in group.orders[0].observations if o.code.code == "HGB")
    assert hgb.reference_range == ("130-175" if demo.male else "115-150")


def test_the_example_configuration_takes_the_registry_url_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HR_ADAPTER_SECRET", "s")
    monkeypatch.delenv("HR_REGISTRY_URL", raising=False)
    assert load_config(EXAMPLES / "adapter-hosp-a.yaml").registry.url == "http://127.0.0.1:8000"
    monkeypatch.setenv("HR_REGISTRY_URL", "http://127.0.0.1:9000/")
    assert load_config(EXAMPLES / "adapter-hosp-a.yaml").registry.url == "http://127.0.0.1:9000"
    monkeypatch.setenv("HR_REGISTRY_URL", "")  # empty counts as unset, as ${NAME:-default} does in a shell
    assert load_config(EXAMPLES / "adapter-hosp-a.yaml").registry.url == "http://127.0.0.1:8000"
