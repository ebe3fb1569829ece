"""The words of a notification (docs/notifications.md §texts) against the real catalog: named only when the
catalog clears every item, never a sensitive one nor its hospital."""

from __future__ import annotations

import pytest

from registry.catalog_file import load_catalog
from registry.services.notifications.texts import Subject, compose, named
from registry.settings import DEFAULT_CATALOG

CATALOG = load_catalog(DEFAULT_CATALOG)
CBC, WBC, HBSAG, SCREEN = (CATALOG.item(i) for i in ("L001", "L002", "L145", "L155"))
IMAGING = next(item for item in CATALOG.items if item.kind.value == "imaging")
ALL_WORDS = [HBSAG.name_zh, HBSAG.name_en, SCREEN.name_zh, SCREEN.name_en, "医院", "hospital"]


def test_a_cleared_item_and_its_hospital_are_named_in_either_language() -> None:
    subject = Subject(CBC, [CBC, WBC], "北京市第一示范医院", "final")
    zh = "【区域检查检验结果互认平台】您在北京市第一示范医院的血常规（全血细胞计数）检验报告已出，请登录平台查看。"
    en = (
        "Your Complete blood count panel lab report from {} is ready. Sign in to the regional results portal to view it"
    )
    assert compose(subject, "zh") == zh
    assert compose(subject, "en") == en.format("北京市第一示范医院") + "."
    assert "已更正" in compose(Subject(CBC, [CBC], "X 医院", "corrected"), "zh")
    assert "检查报告已出" in compose(Subject(IMAGING, [IMAGING], "X 医院", "final"), "zh")


@pytest.mark.parametrize("status", ["final", "amended"])
def test_any_sensitive_item_makes_the_text_generic(status: str) -> None:
    assert SCREEN.sensitive and HBSAG.sensitive and not CBC.sensitive  # the catalog's marks
    for subject in (Subject(HBSAG, [HBSAG], "地坛医院", status), Subject(CBC, [CBC, HBSAG], "地坛医院", status),
                    Subject(None, [SCREEN], "地坛医院", status)):  # fmt: skip
        assert named(subject) is None
        for lang in ("zh", "en"):
            text = compose(subject, lang)
            assert not any(word in text for word in [*ALL_WORDS, "地坛"]), text


def test_without_a_clear_single_item_nothing_is_named() -> None:
    assert named(Subject(None, [], "X 医院", "final")) is None  # not in the catalog
    assert named(Subject(None, [CBC, WBC], "X 医院", "final")) is None  # several results, no report item
    assert named(Subject(None, [WBC], "X 医院", "final")) is WBC
    assert (
        compose(Subject(None, [], "X 医院", "final"), "zh")
        == "【区域检查检验结果互认平台】您有一份新的检查检验报告，请登录平台查看。"
    )
