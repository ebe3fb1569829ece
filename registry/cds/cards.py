r"""CDS Hooks 2.0 cards for recognition advice (field names as cds-hooks.hl7.org/2.0 §Card, §Suggestion, §Action,
§Link; the duplicate card's topic is the CDS Hooks card type ``duplicate-therapy``).

One card per recognizable order: a Chinese summary under 140 characters naming the item, the hospital, the date and
how long the result stays valid; a Markdown detail with the values; indicator ``warning``; a recommended suggestion
that deletes the draft order; the non-recognition reasons as ``overrideReasons``; a link to the report's page. The
clinician always has the last word: nothing here blocks the order.

``detail`` is GitHub-flavoured Markdown that third-party EHRs render (CDS Hooks 2.0 §Card ``detail``). Everything in
it that comes from data — hospitals' names, result values, marks, even the catalog's names — goes through
``md_text``: each character that opens or closes inline markup in CommonMark or GFM — ``\ ` * _ [ ] ( ) < > & | ! ~
$`` (emphasis, code, links and images, autolinks and raw HTML, entities, table cells, strikethrough, math) — is
backslash-escaped (CommonMark §2.4: an escaped ASCII punctuation character stands for itself), and line breaks become
spaces, so data never starts a line and block markers (``#``, ``-``, ``1.``) cannot take effect. A value such as
``](javascript:alert(1)) <script>`` stays text: it cannot close a link, open one, or start raw HTML. Links are built
by the registry from resource ids only.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, tzinfo
from typing import Any

from catalog import REASONS, Status, last_valid_day
from catalog.codes import NONRECOGNITION_REASONS
from registry.services.policy import RESTRICTED_ZH
from registry.services.recognition import Candidate, CheckedOrder

CARD_TYPE = "http://terminology.hl7.org/CodeSystem/cdshooks-card-type"
SOURCE_LABEL = "区域检查检验结果互认平台"
FLAGS = {"H": "↑", "HH": "↑↑", "L": "↓", "LL": "↓↓", "A": "异常", "AA": "危急"}
SUMMARY_LIMIT = 139


def _day(moment: datetime, tz: tzinfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d")


def _through(valid_until: datetime, tz: tzinfo) -> str:
    """ "有效至" names the last valid day (docs/design.md §5 rule 5): the window ``[effective, valid_until)`` ends
    before ``valid_until``, so a window ending at 2026-12-03T00:00+08:00 is valid through 2026-12-02."""
    return last_valid_day(valid_until, tz).isoformat()


def _minute(moment: datetime, tz: tzinfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M")


def _clip(text: str) -> str:
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1] + "…"


_MD_PUNCTUATION = re.compile(r"([\\`*_\[\]()<>&|!~$])")


def md_text(text: str | None) -> str:
    """``text`` as literal GFM inline text (see the module docstring)."""
    return _MD_PUNCTUATION.sub(r"\\\1", " ".join((text or "").split()))


_md = md_text


def override_reasons() -> list[dict[str, str]]:
    return [{"system": NONRECOGNITION_REASONS, "code": r.code, "display": r.display_zh} for r in REASONS]


def report_link(base_url: str, c: Candidate) -> str:
    ref = c.report_ref or c.result_ref
    return f"{base_url}/clinician/reports/{ref}"


def detail(c: Candidate, tz: tzinfo) -> str:
    hospital = c.issuer.name if c.issuer else "（未知机构）"
    lines = [
        f"**{'本院已有结果' if c.same_hospital else '外院可互认结果'}** — {_md(c.item.name_zh)}",
        "",
        f"- 出具机构：{_md(hospital)}",
        f"- 检查检验时间：{_minute(c.effective, tz)}",
        f"- 互认标识：{_md(c.hr_mark) or '无'}",
        f"- 互认有效期至：{_through(c.valid_until, tz)}（{_minute(c.valid_until, tz)} 前）",
    ]
    rows = list(c.members) or [(c.item, c.value_text, c.interpretation)]
    shown = [(item, value, flag) for item, value, flag in rows if value]
    if shown:
        lines += ["", "| 项目 | 结果 | 提示 |", "|---|---|---|"]
        lines += [
            f"| {_md(item.name_zh)} | {_md(value)} | {FLAGS.get(flag or '', '')} |" for item, value, flag in shown
        ]
    return "\n".join(lines)


def order_card(checked: CheckedOrder, base_url: str, tz: tzinfo) -> dict[str, Any] | None:
    """The card for one checked order, or None when there is no advice to give."""
    if checked.card_uuid is None or not checked.candidates or checked.item is None:
        return None
    c = checked.candidates[0]
    hospital = c.issuer.name if c.issuer else "外院"
    if checked.decision.status is Status.SAME_HOSPITAL_DUPLICATE:
        summary = (
            f"重复开单：本院{_day(c.effective, tz)}已做{checked.item.name_zh}，有效至{_through(c.valid_until, tz)}"
        )
        label = "撤销本次重复开单"
    else:
        mark = c.hr_mark or "HR"
        summary = (
            f"可互认：{_day(c.effective, tz)} {hospital}已做{checked.item.name_zh}（{mark}，"
            f"有效至{_through(c.valid_until, tz)}）"
        )
        label = "互认，撤销本次开单"
    card: dict[str, Any] = {
        "uuid": checked.card_uuid,
        "summary": _clip(summary),
        "detail": detail(c, tz),
        "indicator": "warning",
        "source": {
            "label": SOURCE_LABEL,
            "url": base_url,
            "topic": {"system": CARD_TYPE, "code": "duplicate-therapy", "display": "Duplicate Therapy"},
        },
        "overrideReasons": override_reasons(),
        "links": [{"label": "查看原报告", "url": report_link(base_url, c), "type": "absolute"}],
    }
    if checked.order.ref:
        card["selectionBehavior"] = "at-most-one"
        card["suggestions"] = [
            {
                "label": label,
                "uuid": checked.suggestion_uuid,
                "isRecommended": True,
                "actions": [
                    {
                        "type": "delete",
                        "description": f"撤销{checked.item.name_zh}开单",
                        "resourceId": checked.order.ref,
                    }
                ],
            }
        ]
    return card


def history_card(
    history: list[CheckedOrder], base_url: str, tz: tzinfo, lookback_days: int, *, card_uuid: str | None = None
) -> dict[str, Any] | None:
    """The reception-time reminder (接诊历史提醒): every currently recognizable result from other hospitals; its
    ``uuid`` is the one the reminder was recorded with, so feedback can name it."""
    seen: set[str] = set()
    entries: list[Candidate] = []
    for checked in sorted(history, key=lambda h: -h.candidates[0].effective.timestamp()):
        c = checked.candidates[0]
        exam = c.report_ref or c.result_ref
        if exam in seen or c.same_hospital:
            continue  # a panel and its analytes are one report: listed once
        seen.add(exam)
        entries.append(c)
    if not entries:
        return None
    names = "、".join(dict.fromkeys(c.item.name_zh for c in entries))
    lines = ["| 项目 | 机构 | 时间 | 有效至 | 结果 |", "|---|---|---|---|---|"]
    for c in entries:
        lines.append(
            f"| {_md(c.item.name_zh)} | {_md(c.issuer.name if c.issuer else '')} | {_day(c.effective, tz)} | "
            f"{_through(c.valid_until, tz)} | [{_md(c.value_text) or '查看'}]({report_link(base_url, c)}) |"
        )
    card: dict[str, Any] = {"uuid": card_uuid} if card_uuid else {}
    return {
        **card,
        "summary": _clip(f"外院可互认结果 {len(entries)} 项（近{lookback_days}天）：{names}"),
        "detail": "\n".join(lines),
        "indicator": "info",
        "source": {"label": SOURCE_LABEL, "url": base_url},
    }


def restriction_card(base_url: str, item_name: str | None = None) -> dict[str, Any]:
    """The notice when earlier results exist but the patient paused sharing them with this hospital (policy.consent):
    said, not left as silence. Its ``uuid`` is for logging only: no suggestion and no override reasons — there is
    nothing to decide on (feedback names no recorded card). Break-glass (a reason, audited and shown to the patient)
    is the way in for an emergency."""
    what = f"（{item_name}）" if item_name else ""
    return {
        "uuid": str(uuid.uuid4()),
        "summary": _clip(f"{RESTRICTED_ZH}{what}：外院既往结果未向本院共享"),
        "detail": "患者已暂停向本院共享外院的检查检验结果（个人信息保护法）。如需重新检查请照常开单；"
        "紧急情况下可说明理由后破窗查看（留痕审计，患者可见）。\n\n"
        "The patient has restricted sharing of other hospitals' results with this hospital.",
        "indicator": "info",
        "source": {"label": SOURCE_LABEL, "url": base_url},
    }
