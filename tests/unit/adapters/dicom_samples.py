"""pydicom's bundled sample files (offline, exact names only), given the accession number and body part a hospital's
modality would have filled in (reference/standards-notes.md §3.4)."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

SAMPLES = {
    "CT_small.dcm": {"AccessionNumber": "ACC-0001", "BodyPartExamined": "CHEST"},
    "MR_small.dcm": {"AccessionNumber": "ACC-0002", "BodyPartExamined": "BRAIN"},
}


def sample(name: str, **changes: object) -> Dataset:
    path = get_testdata_file(name)
    if path is None:  # pragma: no cover - the files ship inside the pydicom wheel
        raise FileNotFoundError(name)
    ds = dcmread(path)
    for keyword, value in {**SAMPLES.get(name, {}), **changes}.items():
        setattr(ds, keyword, value)
    return ds


def sample_bytes(name: str, **changes: object) -> bytes:
    buffer = BytesIO()
    sample(name, **changes).save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def write_sample(folder: Path, name: str, **changes: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(sample_bytes(name, **changes))
    return path
