"""The words of a notification (docs/notifications.md §texts): Chinese, or English when the patient chose it.

A text says that a report is ready or was corrected, from which hospital and for which catalog item — and nothing
else: no value, no conclusion or diagnosis, no name (not even a surname: whoever sees the phone's lock screen sees
the text), no identifier. Only what the catalog has cleared is named: a report with any item the catalog marks
``sensitive`` (HIV, syphilis, hepatitis serology and the panels holding them), or with no catalog item at all, gets
the generic text, naming neither the item nor the hospital (a hospital's or department's name can say as much as the
test's)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from catalog import Item
from catalog.model import Kind

NOTIFIED_STATUSES = frozenset({"final", "amended", "corrected"})
CORRECTIONS = frozenset({"amended", "corrected"})
PORTAL_NAME = {"zh": "区域检查检验结果互认平台", "en": "the regional results portal"}


@dataclass(frozen=True, slots=True)
class Subject:
    """What a notification may be about: the report's own catalog item (if the index maps it), every item of the
    report and its results, the issuing hospital's name and the report's status."""

    own_item: Item | None
    items: Collection[Item]
    hospital: str | None
    status: str


def named(subject: Subject) -> Item | None:
    """The item a text may name, or None for the generic text."""
    if not subject.items or any(item.sensitive for item in subject.items):
        return None
    if subject.own_item is not None:
        return subject.own_item
    return next(iter(subject.items)) if len(subject.items) == 1 else None


def compose(subject: Subject, language: str) -> str:
    """The text of the notification about ``subject`` in ``language`` (``zh`` or ``en``)."""
    item = named(subject)
    corrected = subject.status in CORRECTIONS
    en = language == "en"
    portal = PORTAL_NAME["en" if en else "zh"]
    if item is None or not subject.hospital:
        if en:
            what = "One of your reports was corrected" if corrected else "You have a new report"
            return f"{what}. Sign in to {portal} to view it."
        what = "您的一份检查检验报告已更正" if corrected else "您有一份新的检查检验报告"
        return f"【{portal}】{what}，请登录平台查看。"
    lab = item.kind is Kind.LAB
    if en:
        kind = "lab" if lab else "imaging"
        done = "was corrected" if corrected else "is ready"
        return f"Your {item.name_en} {kind} report from {subject.hospital} {done}. Sign in to {portal} to view it."
    kind = "检验" if lab else "检查"
    done = "已更正" if corrected else "已出"
    return f"【{portal}】您在{subject.hospital}的{item.name_zh}{kind}报告{done}，请登录平台查看。"
