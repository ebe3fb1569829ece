"""pydicom's bundled sample files (offline, exact names only), given the accession number and body part a hospital's
modality would have filled in (pydicom's test files); dcmtk's tools as a modality uses them."""

from __future__ import annotations

import os
import shutil
import subprocess
from io import BytesIO
from pathlib import Path

import pytest
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


TOOLS = ("storescu", "dcmcjpeg", "dcmcrle", "dcmcjpls", "dcmconv")


@pytest.fixture(scope="module")
def dcmtk() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        message = f"dcmtk is not installed ({', '.join(missing)} missing; apt-get install dcmtk)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: CI must have it (./scripts/test installs it)")
        pytest.skip(message)


def storescu(port: int, path: Path, *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed argv
        [
            shutil.which("storescu") or "storescu",
            *options,
            "-aet",
            "CT-SCANNER",
            "-aec",
            "HR-ADAPTER",
            "127.0.0.1",
            str(port),
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def tool(name: str, *argv: str) -> None:
    done = subprocess.run([shutil.which(name) or name, *argv], capture_output=True, text=True, timeout=60, check=False)  # noqa: S603
    assert done.returncode == 0, done.stderr
