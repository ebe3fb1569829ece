"""Codes in the words people read, in one place for every page and chart: UCUM units as a laboratory report prints
them (``10*9/L`` → ``10⁹/L``), v3 ObservationInterpretation flags in words (``H`` → 偏高 / high) and DICOM body parts
by name (``CHEST`` → 胸部 / Chest)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from types import MappingProxyType

from catalog.body_parts import body_part_name

_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")

UNITS = MappingProxyType(
    {
        "10*9/L": "10⁹/L",
        "10*12/L": "10¹²/L",
        "10*6/L": "10⁶/L",
        "10*3/uL": "10³/μL",
        "10*6/uL": "10⁶/μL",
        "/uL": "/μL",
        "/L": "/L",
        "umol/L": "μmol/L",
        "nmol/L": "nmol/L",
        "pmol/L": "pmol/L",
        "ug/L": "μg/L",
        "ug/dL": "μg/dL",
        "ug/mL": "μg/mL",
        "uL": "μL",
        "um": "μm",
        "m[IU]/L": "mIU/L",
        "u[IU]/mL": "μIU/mL",
        "[IU]/L": "IU/L",
        "[IU]/mL": "IU/mL",
        "m[IU]/mL": "mIU/mL",
        "k[IU]/L": "kIU/L",
        "U/L": "U/L",
        "mm[Hg]": "mmHg",
        "Cel": "°C",
        "%": "%",
        "{ratio}": "",
        "1": "",
        "mL/min/{1.73_m2}": "mL/min/1.73m²",
        "mL/min/1.73.m2": "mL/min/1.73m²",
        "mm/h": "mm/h",
    }
)
"""UCUM code → how laboratory reports write it (seconds, ``s``, are 秒 in Chinese: ``unit_text``)."""

_POWER = re.compile(r"10\*(-?\d+)")


def unit_text(code: str | None, lang: str = "zh") -> str:
    """A UCUM unit code as people write it; an unknown code with ``10*n`` gets its power as a superscript, ``u``
    before a unit becomes ``μ``; anything else as it came."""
    if not code:
        return ""
    if code == "s":
        return "s" if lang == "en" else "秒"
    if code in UNITS:
        return UNITS[code]
    text = _POWER.sub(lambda m: "10" + m.group(1).translate(_SUPERSCRIPT), code)
    text = re.sub(r"(?<![A-Za-z])u(?=(mol|g|L|l|m|IU)\b)", "μ", text)
    return text.replace("[IU]", "IU").replace("[", "").replace("]", "")


# v3 ObservationInterpretation (terminology.hl7.org/CodeSystem/v3-ObservationInterpretation)
FLAGS = MappingProxyType(
    {
        "H": ("↑ 偏高", "↑ high"),
        "HH": ("↑↑ 危急偏高", "↑↑ critically high"),
        "HU": ("↑↑ 显著偏高", "↑↑ significantly high"),
        "L": ("↓ 偏低", "↓ low"),
        "LL": ("↓↓ 危急偏低", "↓↓ critically low"),
        "LU": ("↓↓ 显著偏低", "↓↓ significantly low"),
        "A": ("异常", "abnormal"),
        "AA": ("危急异常", "critically abnormal"),
        "N": ("正常", "normal"),
        "POS": ("阳性", "positive"),
        "NEG": ("阴性", "negative"),
        "DET": ("检出", "detected"),
        "ND": ("未检出", "not detected"),
        "R": ("耐药", "resistant"),
        "S": ("敏感", "susceptible"),
        "I": ("中介", "intermediate"),
        "<": ("低于检测下限", "below the detection limit"),
        ">": ("高于检测上限", "above the detection limit"),
    }
)


def flag_text(code: str, lang: str = "zh") -> str:
    names = FLAGS.get(code)
    if names is None:
        return code
    return names[1] if lang == "en" else names[0]


def flags_text(codes: Iterable[str], lang: str = "zh") -> str:
    return ("、" if lang != "en" else ", ").join(flag_text(c, lang) for c in codes)


def body_part(term: str, lang: str = "zh") -> str:
    return body_part_name(term, lang)
