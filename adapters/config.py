"""One YAML file per hospital configures the adapter (``hr-adapter check-config FILE`` explains every problem).

Values may name environment variables as ``${NAME}`` (for the client secret above all), or ``${NAME:-default}`` with
a default for when it is unset or empty (as in POSIX shells); relative paths are taken from the configuration file's
folder. ``examples/adapter-hosp-a.yaml`` is a commented example.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from adapters.errors import ConfigError

NATIONAL_ID_SYSTEM = "https://hr-registry.org.cn/fhir/sid/cn-resident-id"
"""The registry's identifier system for the resident identity card number (docs/design.md §4)."""
NATIONAL_ID_SYSTEMS = frozenset(
    {NATIONAL_ID_SYSTEM}
    | {
        f"https://hr-registry.org.cn/fhir/sid/{kind}"
        for kind in ("passport", "hk-macao-permit", "taiwan-permit", "foreigner-permanent-residence")
    }
)
"""The registry's default national-identifier systems (its ``REGISTRY_NATIONAL_ID_SYSTEMS``): values masked in what
the adapter shows (adapters/masking.py)."""

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ORG_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_TZ = re.compile(r"^([+-])(\d{2}):(\d{2})$")


class Policy(StrEnum):
    """How the HL7 listener treats content it cannot fully map.

    ``strict``: an unmapped local code, an unknown unit or a value that does not fit its type rejects the message
    (``AE``), so the LIS interface team fixes it at the source. ``lenient``: the message is accepted, the observation
    is sent with its local code (or its raw value as text), and the problem is logged and, for codes, recorded in the
    adapter's unmapped-code list.
    """

    STRICT = "strict"
    LENIENT = "lenient"


class NationalIdPolicy(StrEnum):
    """What the HL7 listener does with a PID that carries no national identifier (adapters/hl7v2/patient.py).

    ``refuse``: AE naming PID-3, so the LIS hears it at once. ``wait``: the report is sent for the patient this
    hospital's HIS registered under the MRN; until the registry knows the MRN it answers 412, the outbox retries for
    ``outbox.wait_for_references_hours`` and ``hr-adapter outbox status`` names the MRN.
    """

    REFUSE = "refuse"
    WAIT = "wait"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegistrySection(_Model):
    url: str = Field(description="The registry's base URL (FHIR at <url>/fhir, tokens at <url>/auth/token).")
    client_id: str
    client_secret: str
    timeout_seconds: float = Field(default=30, gt=0)
    verify_tls: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")


class HospitalSection(_Model):
    organization: str = Field(description="The hospital's Organization id in the registry.")
    timezone: str = Field(default="+08:00", description="UTC offset of times sent without one (HL7 TS, DICOM DA/TM).")

    @field_validator("organization")
    @classmethod
    def _org(cls, value: str) -> str:
        if not _ORG_ID.match(value):
            raise ValueError("must be a FHIR id (letters, digits, '-', '.'; at most 64)")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        if not _TZ.match(value):
            raise ValueError("must be a UTC offset such as +08:00")
        return value

    @property
    def tz(self) -> dt.timezone:
        m = _TZ.match(self.timezone)
        if m is None:  # pragma: no cover - the validator checked it
            raise ValueError(self.timezone)
        sign = -1 if m.group(1) == "-" else 1
        return dt.timezone(sign * dt.timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))


class Pid3Rule(_Model):
    """Which FHIR identifier system a PID-3 repetition (or a DICOM issuer of patient id) stands for.

    A rule matches on the identifier type code (CX.5, e.g. ``MR``, ``NNCHN``) and/or the assigning authority (CX.4's
    first component or its universal id); ``system`` is a URI or one of the short names ``mrn`` (the hospital's MRN
    system) and ``national`` (the resident identity card system).
    """

    type: str | None = None
    authority: str | None = None
    system: str

    @model_validator(mode="after")
    def _something(self) -> Pid3Rule:
        if self.type is None and self.authority is None:
            raise ValueError("a rule needs a type, an authority or both")
        return self


class IdentifiersSection(_Model):
    base: str = Field(description="Prefix of this hospital's identifier systems: <base>/mrn, <base>/report-no, …")
    pid3: list[Pid3Rule] = Field(
        default_factory=lambda: [
            Pid3Rule(type="MR", system="mrn"),
            Pid3Rule(type="NNCHN", system="national"),
            Pid3Rule(type="NI", system="national"),
        ]
    )

    @field_validator("base")
    @classmethod
    def _base(cls, value: str) -> str:
        if not re.match(r"^(https?://|urn:)\S+$", value):
            raise ValueError("must be a URI (https://… or urn:…)")
        return value.rstrip("/")

    def system(self, short: str) -> str:
        if short == "national":
            return NATIONAL_ID_SYSTEM
        if "/" in short or ":" in short:
            return short
        return f"{self.base}/{short}"

    @property
    def mrn(self) -> str:
        return self.system("mrn")


class CodesSection(_Model):
    map_file: Path | None = Field(default=None, description="CSV system,code,item[,display] (hr-registry's format).")
    local_system: str | None = Field(
        default=None,
        description="System of local codes in OBR-4/OBX-3 (coding system 'L', '99…' or empty); default <base>/lis",
    )
    catalog: Path | None = Field(default=None, description="The recognized-item catalog; default the bundled one.")


class Listen(_Model):
    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)


class DropSection(_Model):
    folder: Path
    poll_seconds: float = Field(default=2, gt=0)
    settle_seconds: float = Field(default=1, ge=0, description="A file must be this old before it is read.")


class Hl7Section(_Model):
    policy: Policy = Policy.STRICT
    without_national_id: NationalIdPolicy = NationalIdPolicy.REFUSE
    listen: Listen | None = None
    drop: DropSection | None = None
    max_message_bytes: int = Field(default=1_048_576, gt=0)
    idle_timeout_seconds: float = Field(default=300, gt=0)
    encoding: str = Field(default="utf-8", description="Character set of messages whose MSH-18 is empty.")
    processing_ids: list[str] = Field(default_factory=lambda: ["P"])
    hr_mark: str | None = Field(default="HR", description="meta.tag code on final lab results of catalog items.")

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown character set {value!r}") from None
        return value


class PullSection(_Model):
    qido_rs: str = Field(description="The PACS's DICOMweb base (QIDO-RS and WADO-RS), e.g. http://pacs/dicom-web")
    username: str | None = None
    password: str | None = None
    page_size: int = Field(default=100, gt=0, le=1000)


class DicomSection(_Model):
    ae_title: str = "HR-ADAPTER"
    listen: Listen | None = None
    stable_seconds: float = Field(default=30, ge=0, description="A study is sent this long after its last instance.")
    wado_rs: str | None = Field(default=None, description="WADO-RS base that viewers use (the ImagingStudy Endpoint).")
    pull: PullSection | None = None
    hr_mark: str | None = "HR"
    max_pdu: int = 0

    @field_validator("ae_title")
    @classmethod
    def _aet(cls, value: str) -> str:
        if not 0 < len(value) <= 16 or not value.isascii() or "\\" in value:
            raise ValueError("a DICOM AE title is 1–16 ASCII characters")
        return value


class OutboxSection(_Model):
    path: Path
    concurrency: int = Field(default=4, ge=1, le=32)
    batch_size: int = Field(
        default=20, ge=1, le=100, description="Messages sent in one transaction Bundle (1: one message per request)."
    )
    max_backoff_seconds: float = Field(default=300, gt=0)
    wait_for_references_hours: float = Field(
        default=24, ge=0, description="How long a message whose patient or study the registry lacks keeps retrying."
    )


class AdapterConfig(_Model):
    registry: RegistrySection
    hospital: HospitalSection
    identifiers: IdentifiersSection
    codes: CodesSection = CodesSection()
    hl7: Hl7Section = Hl7Section()
    dicom: DicomSection = DicomSection()
    outbox: OutboxSection
    source: Path | None = Field(default=None, exclude=True)

    @property
    def local_code_system(self) -> str:
        return self.codes.local_system or self.identifiers.system("lis")


def _substitute(node: Any, where: str, missing: list[str]) -> Any:
    if isinstance(node, str):

        def repl(m: re.Match[str]) -> str:
            value = os.environ.get(m.group(1))
            if not value and m.group(2) is not None:  # ${NAME:-default}: the default when unset or empty
                value = m.group(2)
            if value is None:
                missing.append(f"{where}: environment variable {m.group(1)} is not set")
                return ""
            return value

        return _ENV.sub(repl, node)
    if isinstance(node, dict):
        return {k: _substitute(v, f"{where}.{k}" if where else str(k), missing) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, f"{where}[{i}]", missing) for i, v in enumerate(node)]
    return node


def _resolve_paths(raw: dict[str, Any], folder: Path) -> None:
    def fix(section: str, key: str, sub: str | None = None) -> None:
        node = raw.get(section)
        if isinstance(node, dict) and sub is not None:
            node = node.get(sub)
        if isinstance(node, dict) and isinstance(node.get(key), str):
            p = Path(node[key]).expanduser()
            node[key] = os.path.normpath(p if p.is_absolute() else folder / p)

    fix("codes", "map_file")
    fix("codes", "catalog")
    fix("outbox", "path")
    fix("hl7", "folder", "drop")


def _explain(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = "is required"
        elif err["type"] == "extra_forbidden":
            msg = "is not a known setting (misspelt?)"
        out.append(f"{loc}: {msg}")
    return out


def load_config(path: Path, *, need_registry: bool = True) -> AdapterConfig:
    """Read and validate a configuration file; ``ConfigError`` lists every problem found. Commands that never talk to
    the registry (outbox status, code lists) pass ``need_registry=False``: an unset secret variable is then no error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot be read: {exc}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError([f"{path}: not valid YAML{where}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}: expected a mapping of sections (registry, hospital, identifiers, outbox, …)"])
    missing: list[str] = []
    raw = _substitute(raw, "", missing)
    _resolve_paths(raw, path.resolve().parent)
    try:
        config = AdapterConfig.model_validate({**raw, "source": path})
    except ValidationError as exc:
        raise ConfigError((missing if need_registry else []) + _explain(exc)) from None
    if missing and need_registry:
        raise ConfigError(missing)
    return config


def config_from_mapping(raw: dict[str, Any], folder: Path) -> AdapterConfig:
    """A configuration from already-parsed data (tests, embedding); the same checks as ``load_config``."""
    raw = copy.deepcopy(raw)
    _resolve_paths(raw, folder)
    try:
        return AdapterConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(exc)) from None
