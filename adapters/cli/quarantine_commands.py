"""``hr-adapter quarantine list|show|replay``: the DICOM studies the adapter accepted but could not map.

Each held study keeps its instances' header facts and the reason (adapters/dicom/quarantine.py). The operator fixes
the cause — the code map or the configuration, or the header itself with ``replay --set KEYWORD=VALUE`` (PatientID,
AccessionNumber, StudyDate, …) — and replays: a study that now maps goes to the outbox and leaves the quarantine.
What is printed carries no patient name and no identifier in clear (docs/design.md §6; adapters/masking.py).
"""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table

from adapters.cli.base import ConfigOption, adapter_for, config_of, err, intake_summary, out
from adapters.config import AdapterConfig
from adapters.dicom.headers import InstanceFacts
from adapters.dicom.quarantine import HeldStudy, Quarantine
from adapters.masking import HIDDEN, mask_id_shaped, masked
from adapters.push.outbox import Outbox

quarantine_app = typer.Typer(
    help="DICOM studies that could not be mapped: why, and send them after the fix.", no_args_is_help=True
)


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(at))


def _held(config: AdapterConfig, uids: list[str] | None = None) -> list[HeldStudy]:
    outbox = Outbox(config.outbox.path)
    try:
        return Quarantine(outbox).studies(uids)
    finally:
        outbox.close()


@quarantine_app.command("list")
def quarantine_list(config_path: ConfigOption, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The held studies, oldest first, each with the reason it could not be mapped."""

    held = _held(config_of(config_path, need_registry=False))
    if as_json:
        doc = [
            {
                "study_uid": h.study_uid,
                "source": h.source,
                "reason": mask_id_shaped(h.reason),
                "first_held": h.first_at,
                "last_held": h.last_at,
                "attempts": h.attempts,
                "instances": len(h.instances),
            }
            for h in held
        ]
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    if not held:
        out.print("no DICOM study is held in the quarantine")
        return
    table = Table("study", "from", "held since", "instances", "reason")
    for h in held:
        table.add_row(h.study_uid, h.source, _when(h.first_at), str(len(h.instances)), mask_id_shaped(h.reason))
    out.print(table)
    out.print(
        "Fix the cause (code map, configuration, or the header: [bold]replay UID --set PatientID=…[/bold]), then "
        "[bold]hr-adapter quarantine replay[/bold]."
    )


def _shown(facts: InstanceFacts) -> dict[str, Any]:
    raw = orjson.loads(facts.to_json())
    for key in ("family", "given"):
        raw[key] = HIDDEN if raw[key] else ""
    raw["patient_id"] = masked(raw["patient_id"]) if raw["patient_id"] else ""  # as outbox status masks PID-3
    for other in raw["other_ids"]:
        other["value"] = masked(other["value"])
    return {k: v for k, v in raw.items() if v not in ("", None, [], ())}


@quarantine_app.command("show")
def quarantine_show(config_path: ConfigOption, study_uid: str) -> None:
    """One held study: the reason and its instances' header facts (names hidden, identifiers masked)."""

    held = _held(config_of(config_path, need_registry=False), [study_uid])
    if not held:
        err.print(f"no study {study_uid} in the quarantine")
        raise typer.Exit(1)
    h = held[0]
    doc = {
        "study_uid": h.study_uid,
        "source": h.source,
        "reason": mask_id_shaped(h.reason),
        "first_held": _when(h.first_at),
        "last_held": _when(h.last_at),
        "attempts": h.attempts,
        "instances": [_shown(i) for i in sorted(h.instances, key=lambda i: (i.series_uid, i.sop_uid))],
    }
    sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


@quarantine_app.command("replay")
def quarantine_replay(
    config_path: ConfigOption,
    study_uids: Annotated[
        list[str] | None, typer.Argument(help="Study Instance UIDs (default: every held study).")
    ] = None,
    fix: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Correct a header value of every instance of the replayed studies: KEYWORD=VALUE, one of PatientID, "
            "IssuerOfPatientID, AccessionNumber, StudyDate, StudyTime, Modality, BodyPartExamined, StudyDescription.",
        ),
    ] = None,
) -> None:
    """Map held studies again with the current code map and configuration (and the corrections given).

    Those that map now are queued for the registry and leave the quarantine; exit 1 when some are still held."""
    from adapters.dicom.intake import corrections
    from adapters.errors import AdapterError

    config = config_of(config_path, need_registry=False)  # replaying only queues; delivery sends
    try:
        fixes = corrections(fix or [])
    except AdapterError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    if fixes and not study_uids:
        err.print("[red]--set corrects named studies only: give their Study Instance UIDs[/red]")
        raise typer.Exit(2)
    adapter = adapter_for(config)
    try:
        missing = sorted(set(study_uids or []) - {h.study_uid for h in adapter.dicom.quarantine.studies(study_uids)})
        report = adapter.dicom.replay(study_uids, fixes)
    finally:
        adapter.close()
    for uid in missing:
        err.print(f"  ✗ no study {uid} in the quarantine")
    out.print(f"replayed {report.studies} study(ies)", highlight=False)
    intake_summary(report)
    if missing:
        raise typer.Exit(1)
