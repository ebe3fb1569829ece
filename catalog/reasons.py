"""不互认原因: the coded reasons a clinician gives for declining a recognizable result (docs/design.md §5).

Codes 01–08 follow a deployed regional front end and the situations of the 2022 national measures
(医疗机构检查检验结果互认管理办法); 98 and 99 are recorded but, by that practice, not counted as a refusal.
Source: ``data/reference/nonrecognition_reasons.tsv`` (copied from the shared reference, provenance kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    display_zh: str
    display_en: str
    counts_as_nonrecognition: bool
    requires_comment: bool = False
    """99 needs the disease name the serial testing monitors."""


REASONS: tuple[Reason, ...] = (
    Reason("01", "因病情变化，检查检验结果与患者临床表现、疾病诊断不符，难以满足临床诊疗需求的",
           "Condition changed; prior result inconsistent with current presentation or diagnosis", True),
    Reason("02", "检查检验结果在疾病发展演变过程中变化较快的",
           "Result changes quickly as the disease evolves", True),
    Reason("03", "检查检验项目对于疾病诊疗意义重大的（如手术、输血等重大医疗措施前）",
           "Result is critical for a major intervention (before surgery, transfusion, etc.)", True),
    Reason("04", "患者病情处于急诊、急救、重型、危重型等紧急状态下的",
           "Emergency, resuscitation or critical condition", True),
    Reason("05", "涉及司法、伤残、病退、劳动仲裁等鉴定的",
           "Forensic, disability, retirement or labour-arbitration assessment", True),
    Reason("06", "国家规定需要相应资质的检测机构的检查检验项目",
           "Item must by regulation be done by a specially qualified institution", True),
    Reason("07", "诊治医师认为有必要进行再次检查的",
           "Treating physician judges a repeat necessary", True),
    Reason("08", "其他情形确需复查的",
           "Other situation that genuinely requires a repeat", True),
    Reason("98", "医院未收到或患者未能提供外院检查影像资料无法进行诊断的",
           "Images from the other hospital not received or not provided; cannot diagnose", False),
    Reason("99", "由于疾病诊断或病情发展监测需要进行连续性检查/检验（须注明疾病名称）",
           "Serial testing needed to monitor a disease (disease name required)", False, requires_comment=True),
)  # fmt: skip

BY_CODE = MappingProxyType({r.code: r for r in REASONS})


def reason(code: str) -> Reason | None:
    """The reason with this code, or None for a code outside 01–08, 98, 99."""
    return BY_CODE.get(code)
