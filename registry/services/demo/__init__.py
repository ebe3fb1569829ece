"""The synthetic demo region (``./scripts/serve`` loads it once): see :mod:`.region`."""

from registry.services.demo.activity import DemoActivity
from registry.services.demo.people import (
    DEMO_STATE_KEY,
    NATIONAL_ID,
    ORG_CODE,
    REGION_EXT,
    demo_principals,
    first_patient_national_id,
)
from registry.services.demo.region import DemoRegion, demo_studies

__all__ = [
    "DEMO_STATE_KEY",
    "NATIONAL_ID",
    "ORG_CODE",
    "REGION_EXT",
    "DemoActivity",
    "DemoRegion",
    "demo_principals",
    "demo_studies",
    "first_patient_national_id",
]
