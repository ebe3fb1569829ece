"""A DICOM attribute's first value as text, the one way the header facts read one (headers.py), and the same read
without pydicom's value conversion where that conversion comes to nothing but decoding ASCII.

pydicom converts an element the first time it is read (``Dataset.__getitem__``: the VR, the character set, the
value's type, its validation), which costs more per attribute than reading the header did. For an element read
from a file and not yet converted, whose VR is one of UI, CS, SH, LO, DA and TM and whose bytes are printable
ASCII (with a trailing NUL or space as padding), or an IS of at most 9 digits (which pydicom prints as sent), in a
character set that reads ASCII as ASCII, pydicom's conversion is the ASCII text, its padding stripped, split at
backslashes (``pydicom.values.multi_string``, ``convert_text``, ``convert_UI``, ``convert_IS_string``): that is
what :func:`plain_text` takes. Anything else (another VR, a byte outside printable ASCII, an escape sequence,
another character set, pydicom configured to convert dates or to raise on invalid values) is read through pydicom
as :func:`text` reads it. What is skipped is pydicom's warning on a value its VR does not allow; the facts check
the values they use themselves. tests/unit/adapters/test_dicom_elements.py compares both on generated files.
"""

from __future__ import annotations

import re

from pydicom import config
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

_PLAIN = re.compile(rb"[\x20-\x7e]*\x00?")
_INTEGER = re.compile(rb" *[+-]?[0-9]{1,9} *\x00?")  # an IS pydicom reads as the int it writes, and prints as sent
_FORMS = {"UI": _PLAIN, "CS": _PLAIN, "SH": _PLAIN, "LO": _PLAIN, "DA": _PLAIN, "TM": _PLAIN, "IS": _INTEGER}
_ASCII_CODECS = frozenset({"iso8859", "latin_1", "utf_8", "GB18030", "GBK"})
"""pydicom's Python codecs (``pydicom.charset.python_encoding``) of ISO_IR 6, ISO_IR 100, ISO_IR 192, GB18030 and
GBK, each of which decodes ASCII bytes as ASCII."""


def text(ds: Dataset, keyword: str) -> str:
    """The attribute's (first) value as text, stripped; "" when absent or empty."""
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, list | tuple) or (hasattr(value, "__iter__") and not isinstance(value, str | bytes)):
        value = value[0] if len(value) else ""
    return str(value).strip()


def plain_text(ds: Dataset, keyword: str) -> str:
    """:func:`text`, without pydicom's conversion where it would only decode ASCII (see the module's note)."""
    tag = _TAG.get(keyword) or tag_for_keyword(keyword)
    # a RawDataElement until something converts it (pydicom's annotation says DataElement)
    elem: object = ds.get_item(tag) if tag is not None else None
    if (
        isinstance(elem, RawDataElement)
        and elem.value is not None
        and (form := _FORMS.get(elem.VR or "")) is not None
        and form.fullmatch(elem.value)
        and not config.datetime_conversion
        and config.settings.reading_validation_mode != config.RAISE
        and _ascii_charset(ds)
    ):
        return elem.value.decode("ascii").rstrip(" \x00").split("\\")[0].strip()
    return text(ds, keyword)


_TAG = {
    keyword: BaseTag(tag)
    for keyword in (
        *("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "Modality", "InstanceNumber"),
        *("SeriesNumber", "SeriesDescription", "BodyPartExamined", "Laterality", "AccessionNumber", "StudyID"),
        *("StudyDescription", "PatientID", "IssuerOfPatientID", "PatientSex", "ContrastBolusAgent", "StudyDate"),
        *("SeriesDate", "StudyTime", "SeriesTime", "PatientBirthDate", "TimezoneOffsetFromUTC", "CodeValue"),
        *("CodingSchemeDesignator", "CodeMeaning", "TypeOfPatientID", "IdentifierTypeCode"),
        *("LocalNamespaceEntityID", "UniversalEntityID"),
    )
    if (tag := tag_for_keyword(keyword)) is not None
}
"""The tags of the keywords the facts read (pydicom's dictionary, looked up once)."""


def _ascii_charset(ds: Dataset) -> bool:
    charset = ds.original_character_set or ds._character_set
    names = [charset] if isinstance(charset, str) else list(charset)
    return bool(names) and all(n in _ASCII_CODECS for n in names)
