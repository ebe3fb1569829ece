"""Configuration changes made elsewhere reach a running server at once, on SQLite and PostgreSQL: the command line
is another process with a cache of its own (here: another AppContext on the same database), and what it changes —
a qualification, a hospital's code map — counts in the server's very next order check. A code now mapped leaves
the unmapped-codes list."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from registry.cli import app as cli_app
from tests.integration.conftest import Api, Database, new_resident_id, unique
from tests.integration.recognition_region import recognition_region
from tests.integration.test_recognition import B_CODES, T0, Clock, card_for, push_cbc, sign

Cli = Callable[..., Result]
runner = CliRunner()


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture(scope="module")
def api(database: Database, tmp_path_factory: pytest.TempPathFactory, clock: Clock) -> Iterator[Api]:
    with recognition_region(database, tmp_path_factory.mktemp("var"), clock) as region:
        yield region


@pytest.fixture
def cli(api: Api, database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """``hr-registry …`` as an operator runs it against the server's database."""
    monkeypatch.setenv("REGISTRY_DATABASE_URL", database.url)
    monkeypatch.setenv("REGISTRY_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("REGISTRY_IDENTITY_SECRET", "test-identity-secret")

    def run(*args: str) -> Result:
        result = runner.invoke(cli_app, list(args))
        assert result.exit_code == 0, result.output
        return result

    return run


def person_at(api: Api, org: str) -> dict[str, Any]:
    nid = new_resident_id()
    return {"nid": nid, org: api.patient(org, unique("P"), nid), "hosp-b": api.patient("hosp-b", unique("B"), nid)}


CBC = [("o-cbc", "http://loinc.org", "58410-2")]


def test_a_qualification_added_or_revoked_on_the_command_line_counts_at_once(api: Api, cli: Cli, clock: Clock) -> None:
    clock.now = T0
    who = person_at(api, "hosp-c")
    push_cbc(api, "hosp-c", f"Patient/{who['hosp-c']['id']}", unique("R"))  # hospital C is not qualified (yet)
    assert card_for(sign(api, "dr-hosp-b", who["nid"], CBC), "o-cbc") is None  # the server has read C's (none)
    added = cli(
        "qualifications",
        "add",
        "--org",
        "hosp-c",
        "--group",
        "hematology",
        "--scope",
        "beijing",
        "--from",
        "2025-01-01",
    )
    qid = added.output.split()[1].rstrip(":")
    assert card_for(sign(api, "dr-hosp-b", who["nid"], CBC), "o-cbc") is not None
    cli("qualifications", "revoke", qid)
    assert card_for(sign(api, "dr-hosp-b", who["nid"], CBC), "o-cbc") is None


def test_a_code_map_imported_on_the_command_line_counts_at_once(
    api: Api, cli: Cli, clock: Clock, tmp_path: Path
) -> None:
    clock.now = T0
    who = person_at(api, "hosp-a")
    push_cbc(api, "hosp-a", f"Patient/{who['hosp-a']['id']}", unique("R"))
    code = unique("CBC")
    order = [("o-cbc", B_CODES, code)]
    assert card_for(sign(api, "dr-hosp-b", who["nid"], order), "o-cbc") is None  # B's map, as read, lacks the code
    csv = tmp_path / "b-codes.csv"
    csv.write_text(f"system,code,item\n{B_CODES},{code},L001\n", encoding="utf-8")
    cli("codes", "import", str(csv), "--org", "hosp-b")
    assert card_for(sign(api, "dr-hosp-b", who["nid"], order), "o-cbc") is not None


def test_a_code_once_mapped_leaves_the_unmapped_codes_list(api: Api, cli: Cli, clock: Clock, tmp_path: Path) -> None:
    clock.now = T0
    who = person_at(api, "hosp-a")
    local = unique("GLU")
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://hosp-a.example/lab-codes", "code": local, "display": "血糖"}]},
        "subject": {"reference": f"Patient/{who['hosp-a']['id']}"},
        "effectiveDateTime": T0.isoformat(),
        "valueQuantity": {"value": 5.5, "unit": "mmol/L"},
        "performer": [{"reference": "Organization/hosp-a"}],
    }
    assert api.post("/fhir/Observation", obs, who="hosp-a-system").status_code == 201

    def listed() -> set[str]:
        lines = cli("codes", "unmapped", "--org", "hosp-a", "--json").output.splitlines()
        on_cli = {json.loads(line)["code"] for line in lines if line.strip()}
        on_api = {u["code"] for u in api.get("/admin/unmapped-codes", who="hosp-a-system").json()["unmapped"]}
        assert on_cli == on_api
        return on_cli

    assert local in listed()
    csv = tmp_path / "a-codes.csv"
    csv.write_text(f"http://hosp-a.example/lab-codes,{local},2345-7\n", encoding="utf-8")
    cli("codes", "import", str(csv), "--org", "hosp-a")
    assert local not in listed()
