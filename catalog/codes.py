"""Code systems the catalog speaks, by their canonical URIs.

The project publishes its own CodeSystems under ``HR_CANONICAL_BASE``; the others are the standards' own URIs
(LOINC, DICOM DCM, UCUM).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

HR_CANONICAL_BASE = "https://hr-registry.org.cn/fhir"

RECOGNIZED_ITEMS = f"{HR_CANONICAL_BASE}/CodeSystem/recognized-items"
"""Catalog item ids (``L001``…, ``I001``…) as codes."""

REGIONAL_ITEM_CODE = f"{HR_CANONICAL_BASE}/CodeSystem/regional-item-code"
"""The region's own item codes (互认项目编码, e.g. ``JY-SH-001``, ``JC-CT-001``)."""

NONRECOGNITION_REASONS = f"{HR_CANONICAL_BASE}/CodeSystem/nonrecognition-reasons"
"""不互认原因 01–08, 98, 99."""

HR_MARK = f"{HR_CANONICAL_BASE}/CodeSystem/hr-mark"
"""The HR mark (互认标识) as a ``meta.tag`` system."""

LOINC = "http://loinc.org"
DICOM_DCM = "http://dicom.nema.org/resources/ontology/DCM"
UCUM = "http://unitsofmeasure.org"

SYSTEM_ALIASES: dict[str, str] = {
    "loinc": LOINC,
    "regional": REGIONAL_ITEM_CODE,
    "item": RECOGNIZED_ITEMS,
    "dcm": DICOM_DCM,
}
"""Short names accepted in the catalog document and on the command line for ``system|code`` tokens."""


@dataclass(frozen=True, slots=True, order=True)
class Coding:
    """A (system, code) pair, as FHIR ``Coding.system`` / ``Coding.code``."""

    system: str
    code: str

    @classmethod
    def parse(cls, token: str) -> Coding:
        """Parse a FHIR token ``system|code`` (a short alias such as ``loinc`` is accepted for the system).

        A token without ``|`` is taken as a bare code with an empty system.
        """
        system, sep, code = token.partition("|")
        if not sep:
            return cls("", token.strip())
        system = system.strip()
        return cls(SYSTEM_ALIASES.get(system.lower(), system), code.strip())

    def __str__(self) -> str:
        return f"{self.system}|{self.code}"


BODY_PART_SNOMED: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "ABDOMEN": ("818981001", "Abdomen"),
        "ABDOMENPELVIS": ("818982008", "Abdomen and Pelvis"),
        "ABDOMINALAORTA": ("7832008", "Abdominal aorta"),
        "ADRENAL": ("23451007", "Adrenal gland"),
        "ANKLE": ("70258002", "Ankle joint"),
        "AORTA": ("15825003", "Aorta"),
        "APPENDIX": ("66754008", "Appendix"),
        "AXILLA": ("91470000", "Axilla"),
        "BILIARYTRACT": ("34707002", "Biliary tract"),
        "BLADDER": ("89837001", "Bladder"),
        "BRAIN": ("12738006", "Brain"),
        "BREAST": ("76752008", "Breast"),
        "CALCANEUS": ("80144004", "Calcaneus"),
        "CAROTID": ("69105007", "Carotid Artery"),
        "CEREBRALA": ("88556005", "Cerebral artery"),
        "CHEST": ("816094009", "Chest"),
        "CHESTABDPELVIS": ("416775004", "Chest, Abdomen and Pelvis"),
        "CIRCLEOFWILLIS": ("11279006", "Circle of Willis"),
        "CLAVICLE": ("51299004", "Clavicle"),
        "COLON": ("71854001", "Colon"),
        "CORONARYARTERY": ("41801008", "Coronary artery"),
        "CSPINE": ("122494005", "Cervical spine"),
        "EAR": ("117590005", "Ear"),
        "ELBOW": ("16953009", "Elbow joint"),
        "EXTREMITY": ("66019005", "Extremity"),
        "FEMUR": ("71341001", "Femur"),
        "FOOT": ("56459004", "Foot"),
        "FOREARM": ("14975008", "Forearm"),
        "HAND": ("85562004", "Hand"),
        "HEAD": ("69536005", "Head"),
        "HEADNECK": ("774007", "Head and Neck"),
        "HEART": ("80891009", "Heart"),
        "HIP": ("24136001", "Hip joint"),
        "HUMERUS": ("85050009", "Humerus"),
        "IAC": ("361078006", "Internal Auditory Canal"),
        "INTRACRANIAL": ("1101003", "Intracranial"),
        "JAW": ("661005", "Jaw region"),
        "KIDNEY": ("64033007", "Kidney"),
        "KNEE": ("72696002", "Knee"),
        "LARYNX": ("4596009", "Larynx"),
        "LIVER": ("10200004", "Liver"),
        "LOWERLEG": ("30021000", "Lower leg"),
        "LOWERLIMB": ("61685007", "Lower limb"),
        "LSPINE": ("122496007", "Lumbar spine"),
        "LUNG": ("39607008", "Lung"),
        "MANDIBLE": ("91609006", "Mandible"),
        "MASTOID": ("59066005", "Mastoid bone"),
        "MESENTRICA": ("86570000", "Mesenteric artery"),
        "NASOPHARYNX": ("360955006", "Nasopharynx"),
        "NECK": ("45048000", "Neck"),
        "NOSE": ("45206002", "Nose"),
        "ORBIT": ("363654007", "Orbital structure"),
        "OVARY": ("15497006", "Ovary"),
        "PANCBILEDUCT": ("110621006", "Pancreatic duct and bile duct systems"),
        "PANCREAS": ("15776009", "Pancreas"),
        "PARATHYROID": ("111002", "Parathyroid"),
        "PAROTID": ("45289007", "Parotid gland"),
        "PATELLA": ("64234005", "Patella"),
        "PELVIS": ("816092008", "Pelvis"),
        "PORTALV": ("32764006", "Portal vein"),
        "PROSTATE": ("41216001", "Prostate"),
        "PULMONARYA": ("81040000", "Pulmonary artery"),
        "PULMONARYV": ("122972007", "Pulmonary vein"),
        "RADIUSULNA": ("110535000", "Radius and ulna"),
        "RECTUM": ("34402009", "Rectum"),
        "RENALA": ("2841007", "Renal artery"),
        "RIB": ("113197003", "Rib"),
        "SCAPULA": ("79601000", "Scapula"),
        "SCROTUM": ("20233005", "Scrotum"),
        "SELLA": ("42575006", "Sella turcica"),
        "SHOULDER": ("16982005", "Shoulder"),
        "SIJOINT": ("39723000", "Sacroiliac joint"),
        "SKULL": ("89546000", "Skull"),
        "SMALLINTESTINE": ("30315005", "Small intestine"),
        "SPINE": ("421060004", "Spine"),
        "SSPINE": ("54735007", "Sacrum"),
        "STERNUM": ("56873002", "Sternum"),
        "STOMACH": ("69695003", "Stomach"),
        "THIGH": ("68367000", "Thigh"),
        "THORACICAORTA": ("113262008", "Thoracic aorta"),
        "THYROID": ("69748006", "Thyroid"),
        "TIBIAFIBULA": ("110536004", "Tibia and fibula"),
        "TLSPINE": ("1217256009", "Thoraco-lumbar spine"),
        "TMJ": ("53620006", "Temporomandibular joint"),
        "TSPINE": ("122495006", "Thoracic spine"),
        "UPPERARM": ("40983000", "Upper arm"),
        "UPPERLIMB": ("53120007", "Upper limb"),
        "URINARYTRACT": ("431938005", "Urinary tract"),
        "UTERUS": ("35039007", "Uterus"),
        "WHOLEBODY": ("38266002", "Entire body"),
        "WRIST": ("74670003", "Wrist joint"),
    }
)
"""DICOM Body Part Examined (0018,0015) defined term → SNOMED CT (code, code meaning), as DICOM PS3.16 Annex L
Table L-1 gives them, for the terms the catalog uses. Cross-checked in DCMTK (dcmsr/libcmr/cid4031e.cc, PS3.16-2023b),
PixelMed (com/pixelmed/anatproc/Anatomy.java), Weasis (BodyPart.java) and bvdh/dicom-terminology-in-fhir (2026b);
older copies of the table use superseded codes (CHEST 51185008, ABDOMEN 818983003) and were not used."""
