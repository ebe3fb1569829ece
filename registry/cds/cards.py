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

Cards are in Chinese unless the request asks for English (``Accept-Language: en…``, as the order screen does when its
page is in English): the words and the catalog's names change, the data (hospitals' names, values) stay as sent.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo
from typing import Any

from catalog import REASONS, Status, last_valid_day
from catalog.codes import NONRECOGNITION_REASONS
from registry.fhir.ids import new_id
from registry.services.policy import RESTRICTED_EN, RESTRICTED_ZH
from registry.services.recognition_orders import Candidate, CheckedOrder

CARD_TYPE = "http://terminology.hl7.org/CodeSystem/cdshooks-card-type"
SOURCE_LABEL = "区域检查检验结果互认平台"
FLAGS = {"H": "↑", "HH": "↑↑", "L": "↓", "LL": "↓↓", "A": "异常", "AA": "危急"}
FLAGS_EN = {"H": "↑", "HH": "↑↑", "L": "↓", "LL": "↓↓", "A": "abnormal", "AA": "critical"}
SUMMARY_LIMIT = 139

_WORDS: dict[str, tuple[str, str]] = {
    "source": (SOURCE_LABEL, "Regional Exam & Lab Result Recognition"),
    "own": ("本院已有结果", "Result already at this hospital"),
    "other": ("外院可互认结果", "Recognizable result from another hospital"),
    "issuer": ("出具机构", "Issued by"),
    "performed": ("检查检验时间", "Performed"),
    "mark": ("互认标识", "HR mark"),
    "none": ("无", "none"),
    "valid": ("互认有效期至", "Recognizable through"),
    "item": ("项目", "Item"),
    "result": ("结果", "Result"),
    "flag": ("提示", "Flag"),
    "hospital": ("机构", "Hospital"),
    "time": ("时间", "Date"),
    "through": ("有效至", "Valid through"),
    "open": ("查看", "open"),
    "unknown_org": ("（未知机构）", "(unknown organization)"),
    "other_org": ("外院", "another hospital"),
    "undo_dup": ("撤销本次重复开单", "Withdraw this duplicate order"),
    "undo": ("互认，撤销本次开单", "Recognize and withdraw this order"),
    "report": ("查看原报告", "Open the report"),
}


def language(accept_language: str | None) -> str:
    """``en`` when the first language the request accepts is English, else ``zh`` (the region's language)."""
    first = (accept_language or "").split(",")[0].strip().lower()
    return "en" if first.startswith("en") else "zh"


def _w(key: str, lang: str) -> str:
    zh, en = _WORDS[key]
    return en if lang == "en" else zh


def _name(item: Any, lang: str) -> str:
    return str(item.name_en if lang == "en" and item.name_en else item.name_zh)


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


def override_reasons(lang: str = "zh") -> list[dict[str, str]]:
    return [
        {"system": NONRECOGNITION_REASONS, "code": r.code, "display": r.display_en if lang == "en" else r.display_zh}
        for r in REASONS
    ]


def report_link(base_url: str, c: Candidate) -> str:
    ref = c.report_ref or c.result_ref
    return f"{base_url}/clinician/reports/{ref}"


def detail(c: Candidate, tz: tzinfo, lang: str = "zh") -> str:
    hospital = c.issuer.name if c.issuer else _w("unknown_org", lang)
    sep = ": " if lang == "en" else "："
    before = f" (before {_minute(c.valid_until, tz)})" if lang == "en" else f"（{_minute(c.valid_until, tz)} 前）"
    lines = [
        f"**{_w('own' if c.same_hospital else 'other', lang)}** — {_md(_name(c.item, lang))}",
        "",
        f"- {_w('issuer', lang)}{sep}{_md(hospital)}",
        f"- {_w('performed', lang)}{sep}{_minute(c.effective, tz)}",
        f"- {_w('mark', lang)}{sep}{_md(c.hr_mark) or _w('none', lang)}",
        f"- {_w('valid', lang)}{sep}{_through(c.valid_until, tz)}{before}",
    ]
    flags = FLAGS_EN if lang == "en" else FLAGS
    rows = list(c.members) or [(c.item, c.value_text, c.interpretation)]
    shown = [(item, value, flag) for item, value, flag in rows if value]
    if shown:
        lines += ["", f"| {_w('item', lang)} | {_w('result', lang)} | {_w('flag', lang)} |", "|---|---|---|"]
        lines += [
            f"| {_md(_name(item, lang))} | {_md(value)} | {flags.get(flag or '', '')} |" for item, value, flag in shown
        ]
    return "\n".join(lines)


def order_card(checked: CheckedOrder, base_url: str, tz: tzinfo, lang: str = "zh") -> dict[str, Any] | None:
    """The card for one checked order, or None when there is no advice to give."""
    if checked.card_uuid is None or not checked.candidates or checked.item is None:
        return None
    c = checked.candidates[0]
    hospital = c.issuer.name if c.issuer else _w("other_org", lang)
    name = _name(checked.item, lang)
    en = lang == "en"
    if checked.decision.status is Status.SAME_HOSPITAL_DUPLICATE:
        summary = (
            f"Duplicate order: {name} was done here on {_day(c.effective, tz)}, valid through "
            f"{_through(c.valid_until, tz)}"
            if en
            else f"重复开单：本院{_day(c.effective, tz)}已做{name}，有效至{_through(c.valid_until, tz)}"
        )
        label = _w("undo_dup", lang)
    else:
        mark = c.hr_mark or "HR"
        summary = (
            f"Recognizable: {name} done at {hospital} on {_day(c.effective, tz)} ({mark}, valid through "
            f"{_through(c.valid_until, tz)})"
            if en
            else f"可互认：{_day(c.effective, tz)} {hospital}已做{name}（{mark}，有效至{_through(c.valid_until, tz)}）"
        )
        label = _w("undo", lang)
    card: dict[str, Any] = {
        "uuid": checked.card_uuid,
        "summary": _clip(summary),
        "detail": detail(c, tz, lang),
        "indicator": "warning",
        "source": {
            "label": _w("source", lang),
            "url": base_url,
            "topic": {"system": CARD_TYPE, "code": "duplicate-therapy", "display": "Duplicate Therapy"},
        },
        "overrideReasons": override_reasons(lang),
        "links": [{"label": _w("report", lang), "url": report_link(base_url, c), "type": "absolute"}],
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
                        "description": f"Withdraw the order for {name}" if en else f"撤销{name}开单",
                        "resourceId": checked.order.ref,
                    }
                ],
            }
        ]
    return card


def history_card(
    history: list[CheckedOrder],
    base_url: str,
    tz: tzinfo,
    lookback_days: int,
    *,
    card_uuid: str | None = None,
    lang: str = "zh",
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
    en = lang == "en"
    names = (", " if en else "、").join(dict.fromkeys(_name(c.item, lang) for c in entries))
    heads = (_w(k, lang) for k in ("item", "hospital", "time", "through", "result"))
    lines = ["| " + " | ".join(heads) + " |", "|---|---|---|---|---|"]
    for c in entries:
        lines.append(
            f"| {_md(_name(c.item, lang))} | {_md(c.issuer.name if c.issuer else '')} | {_day(c.effective, tz)} | "
            f"{_through(c.valid_until, tz)} | [{_md(c.value_text) or _w('open', lang)}]({report_link(base_url, c)}) |"
        )
    card: dict[str, Any] = {"uuid": card_uuid} if card_uuid else {}
    summary = (
        f"{len(entries)} recognizable result(s) from other hospitals (last {lookback_days} days): {names}"
        if en
        else f"外院可互认结果 {len(entries)} 项（近{lookback_days}天）：{names}"
    )
    return {
        **card,
        "summary": _clip(summary),
        "detail": "\n".join(lines),
        "indicator": "info",
        "source": {"label": _w("source", lang), "url": base_url},
    }


def restriction_card(base_url: str, item_name: str | None = None, lang: str = "zh") -> dict[str, Any]:
    """The notice when earlier results exist but the patient paused sharing them with this hospital (policy.consent):
    said, not left as silence. Its ``uuid`` is for logging only: no suggestion and no override reasons — there is
    nothing to decide on (feedback names no recorded card). Break-glass (a reason, audited and shown to the patient)
    is the way in for an emergency."""
    if lang == "en":
        what = f" ({item_name})" if item_name else ""
        return {
            "uuid": new_id(),
            "summary": _clip(f"{RESTRICTED_EN}{what}: earlier results from other hospitals are not shared here"),
            "detail": "The patient has paused sharing other hospitals' exam and lab results with this hospital "
            "(Personal Information Protection Law). Order a new test as usual if needed; in an emergency, break-glass "
            "with a stated reason (audited, shown to the patient).",
            "indicator": "info",
            "source": {"label": _WORDS["source"][1], "url": base_url},
        }
    what = f"（{item_name}）" if item_name else ""
    return {
        "uuid": new_id(),
        "summary": _clip(f"{RESTRICTED_ZH}{what}：外院既往结果未向本院共享"),
        "detail": "患者已暂停向本院共享外院的检查检验结果（个人信息保护法）。如需重新检查请照常开单；"
        "紧急情况下可说明理由后破窗查看（留痕审计，患者可见）。",
        "indicator": "info",
        "source": {"label": SOURCE_LABEL, "url": base_url},
    }
