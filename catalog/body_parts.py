"""DICOM Body Part Examined (0018,0015) defined terms in words people read: Chinese as radiology reports in China
name the region (胸部, 颅脑, 腰椎…) and English as the code meanings of DICOM PS3.16 Table L-1
(``codes.BODY_PART_SNOMED``).

Every term the catalog's imaging items use has a name here (tests/unit check it), so no page shows a bare ``CHEST``
or ``Chest``; a term outside the table is shown as it came."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from catalog.codes import BODY_PART_SNOMED

_ZH: dict[str, str] = {
    "ABDOMEN": "腹部", "ABDOMENPELVIS": "腹部及盆腔", "ABDOMINALAORTA": "腹主动脉", "ADRENAL": "肾上腺",
    "ANKLE": "踝关节", "AORTA": "主动脉", "APPENDIX": "阑尾", "AXILLA": "腋窝", "BILIARYTRACT": "胆道",
    "BLADDER": "膀胱", "BRAIN": "颅脑", "BREAST": "乳腺", "CALCANEUS": "跟骨", "CAROTID": "颈动脉",
    "CEREBRALA": "脑动脉", "CHEST": "胸部", "CHESTABDPELVIS": "胸腹盆腔", "CIRCLEOFWILLIS": "脑底动脉环",
    "CLAVICLE": "锁骨", "COLON": "结肠", "CORONARYARTERY": "冠状动脉", "CSPINE": "颈椎", "EAR": "耳",
    "ELBOW": "肘关节", "EXTREMITY": "四肢", "FEMUR": "股骨", "FOOT": "足", "FOREARM": "前臂", "HAND": "手",
    "HEAD": "头部", "HEADNECK": "头颈部", "HEART": "心脏", "HIP": "髋关节", "HUMERUS": "肱骨",
    "IAC": "内听道", "INTRACRANIAL": "颅内", "JAW": "颌面部", "KIDNEY": "肾脏", "KNEE": "膝关节",
    "LARYNX": "喉", "LIVER": "肝脏", "LOWERLEG": "小腿", "LOWERLIMB": "下肢", "LSPINE": "腰椎", "LUNG": "肺",
    "MANDIBLE": "下颌骨", "MASTOID": "乳突", "MESENTRICA": "肠系膜动脉", "NASOPHARYNX": "鼻咽", "NECK": "颈部",
    "NOSE": "鼻", "ORBIT": "眼眶", "OVARY": "卵巢", "PANCBILEDUCT": "胰胆管", "PANCREAS": "胰腺",
    "PARATHYROID": "甲状旁腺", "PAROTID": "腮腺", "PATELLA": "髌骨", "PELVIS": "盆腔", "PORTALV": "门静脉",
    "PROSTATE": "前列腺", "PULMONARYA": "肺动脉", "PULMONARYV": "肺静脉", "RADIUSULNA": "尺桡骨",
    "RECTUM": "直肠", "RENALA": "肾动脉", "RIB": "肋骨", "SCAPULA": "肩胛骨", "SCROTUM": "阴囊",
    "SELLA": "鞍区", "SHOULDER": "肩关节", "SIJOINT": "骶髂关节", "SKULL": "颅骨", "SMALLINTESTINE": "小肠",
    "SPINE": "脊柱", "SSPINE": "骶椎", "STERNUM": "胸骨", "STOMACH": "胃", "THIGH": "大腿",
    "THORACICAORTA": "胸主动脉", "THYROID": "甲状腺", "TIBIAFIBULA": "胫腓骨", "TLSPINE": "胸腰椎",
    "TMJ": "颞下颌关节", "TSPINE": "胸椎", "UPPERARM": "上臂", "UPPERLIMB": "上肢", "URINARYTRACT": "泌尿系",
    "UTERUS": "子宫", "WHOLEBODY": "全身", "WRIST": "腕关节",
}  # fmt: skip

BODY_PART_NAMES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {term: (_ZH[term], meaning) for term, (_code, meaning) in BODY_PART_SNOMED.items() if term in _ZH}
)
"""DICOM Body Part Examined term → (Chinese name, English name)."""

TERM_OF_SNOMED: Mapping[str, str] = MappingProxyType({code: term for term, (code, _m) in BODY_PART_SNOMED.items()})
"""SNOMED CT code (as ``ImagingStudy.series.bodySite`` carries it) → DICOM Body Part Examined term."""


def body_part_name(term: str, lang: str = "zh") -> str:
    """The name of a Body Part Examined term (or of a SNOMED CT code of PS3.16 Table L-1) in ``lang``; anything
    else as it came."""
    key = TERM_OF_SNOMED.get(term, term.strip().upper().replace(" ", ""))
    names = BODY_PART_NAMES.get(key)
    if names is None:
        return term
    return names[1] if lang == "en" else names[0]
