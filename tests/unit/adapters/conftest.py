"""Shared set-up for the adapter unit tests: Hospital A's configuration and code map (synthetic)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adapters.codes import Coder, load_catalog, read_code_map
from adapters.config import AdapterConfig, config_from_mapping
from catalog import Catalog

DATA = Path(__file__).resolve().parents[2] / "data" / "adapters"


def hosp_a_settings(tmp: Path, **sections: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "registry": {"url": "http://127.0.0.1:8000", "client_id": "hosp-a-adapter", "client_secret": "s3cret"},
        "hospital": {"organization": "hosp-a", "timezone": "+08:00"},
        "identifiers": {"base": "https://hosp-a.example.cn/fhir/sid"},
        "codes": {"map_file": str(DATA / "hosp-a-codes.csv")},
        "hl7": {"policy": "strict"},
        "dicom": {"wado_rs": "https://pacs.hosp-a.example.cn/dicom-web"},
        "outbox": {"path": str(tmp / "outbox.sqlite")},
    }
    for name, value in sections.items():
        raw[name] = {**raw.get(name, {}), **value}
    return raw


def hosp_a_config(tmp: Path, **sections: Any) -> AdapterConfig:
    return config_from_mapping(hosp_a_settings(tmp, **sections), tmp)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture
def config(tmp_path: Path) -> AdapterConfig:
    return hosp_a_config(tmp_path)


@pytest.fixture
def coder(catalog: Catalog, config: AdapterConfig) -> Coder:
    assert config.codes.map_file is not None
    return Coder(catalog, "hosp-a", read_code_map(config.codes.map_file, catalog))
