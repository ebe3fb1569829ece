"""What a DICOMweb request may ask (registry.services.imaging.parameters, PS3.18): checked before anything is
forwarded; the PACS's URLs replaced in its answers however the chunks fall (rewriting); the operator's PACS list
(pacs); the policy's decision on forwarding and caching (policy.imaging)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.errors import BadGatewayError, BadRequestError, NotAcceptableError, NotFoundError
from registry.services.imaging import PacsConfigError, PacsDirectory, parameters
from registry.services.imaging.rewriting import PrefixRewriter
from registry.services.policy import BreakGlass
from registry.services.policy.imaging import cache_control, check_images

WHERE = parameters.target("1.2.3", "1.2.3.4", "1.2.3.4.5")


@pytest.mark.parametrize("value", ["40,400,linear", "-600,1500,linear", "40.5,0.5,sigmoid", "0,1,linear-exact"])
def test_window_takes_center_width_and_function(value: str) -> None:
    assert parameters.window(value) == value


@pytest.mark.parametrize(
    ("value", "says"),
    [("40,400", "three values"), ("40,400,linear,x", "three values"), ("a,400,linear", "numbers"),
     ("40,400,LINEAR", "not one of"), ("40,0.5,linear", "at least 1"), ("40,0,sigmoid", "above 0"),
     ("nan,400,linear", "numbers"), ("40,inf,linear", "numbers")],
)  # fmt: skip
def test_a_window_missing_a_part_or_out_of_range_is_a_clear_400(value: str, says: str) -> None:
    with pytest.raises(BadRequestError, match=says):
        parameters.window(value)


def test_viewport_takes_two_or_six_whole_numbers() -> None:
    assert parameters.viewport("64,64") == "64,64"
    assert parameters.viewport("256, 256, 0, 0, -128, 128") == "256,256,0,0,-128,128"  # a negative sw flips
    refused = (("64", "2 or 6"), ("64,64,0,0", "2 or 6"), ("0,0", "between 1"), ("64,5000", "between 1"),
               ("64.5,64", "whole"), ("64,64,-1,0,10,10", "not be negative"), ("64,64,0,0,0,10", "not 0"))  # fmt: skip
    for bad, says in refused:
        with pytest.raises(BadRequestError, match=says):
            parameters.viewport(bad)


def test_frames_count_from_one() -> None:
    assert parameters.frame_number("1") == 1
    with pytest.raises(BadRequestError, match="count from 1"):
        parameters.frame_number("0")
    for bad in ("-1", "1,2", "x", "1234567890"):
        with pytest.raises(BadRequestError):
            parameters.frame_number(bad)


@pytest.mark.parametrize("bad", ["1.2.a", "", "1..2", "." * 3, "1" * 65, "1.2.3/../4"])
def test_a_uid_is_digits_and_dots(bad: str) -> None:
    with pytest.raises(BadRequestError, match="UID"):
        parameters.uid(bad, "study")


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [(None, "image/jpeg"), ("*/*", "image/jpeg"), ("image/*", "image/jpeg"), ("image/png", "image/png"),
     ("image/png, image/jpeg", "image/png"), ("image/jpeg;q=0.5, image/png", "image/png"),
     ("image/gif, image/png;q=0.1", "image/png")],
)  # fmt: skip
def test_the_rendered_media_type_is_one_orthanc_serves(accept: str | None, chosen: str) -> None:
    assert parameters.rendered_type(accept) == chosen


def test_no_rendered_media_type_it_serves_is_406() -> None:
    for accept in ("image/gif", "image/png;q=0, image/jpeg;q=0", "application/dicom"):
        with pytest.raises(NotAcceptableError):
            parameters.rendered_type(accept)


def test_a_rendered_request_carries_only_checked_parameters() -> None:
    ask = parameters.rendered(WHERE, [("window", "40,400,linear"), ("quality", "80")], "image/png", thumbnail=False)
    assert ask.path == "studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5/rendered"
    assert ask.params == (("quality", "80"), ("window", "40,400,linear")) and ask.accept == "image/png"
    with pytest.raises(BadRequestError, match="more than once"):
        parameters.rendered(WHERE, [("quality", "80"), ("quality", "81")], None, thumbnail=False)
    for name in ("annotation", "charset", "iccprofile", "window-center"):
        with pytest.raises(BadRequestError, match="not a rendered-image parameter"):
            parameters.rendered(WHERE, [(name, "x")], None, thumbnail=False)


def test_a_thumbnail_is_a_small_rendered_image_unless_the_pacs_has_its_own() -> None:
    thumb = parameters.rendered(parameters.target("1.2.3", "1.2.3.4"), [], None, thumbnail=True)
    assert thumb.path == "studies/1.2.3/series/1.2.3.4/rendered" and ("viewport", "128,128") in thumb.params
    native = thumb.native_thumbnail()
    assert native.path == "studies/1.2.3/series/1.2.3.4/thumbnail" and native.params == ()
    sized = parameters.rendered(WHERE, [("viewport", "64,64")], None, thumbnail=True).native_thumbnail()
    assert sized.params == (("viewport", "64,64"),)
    square = parameters.rendered(WHERE, [("viewport", "128,128")], None, thumbnail=True).native_thumbnail()
    assert square.params == (("viewport", "128,128"),)  # asked for as such: kept


@pytest.mark.parametrize(("rows", "columns", "size"), [(64, 128, "128,64"), (512, 256, "64,128"), (128, 128, "128,128"),
                                                       (3000, 2, "1,128"), (0, 10, "128,128")])  # fmt: skip
def test_a_default_thumbnail_takes_the_images_shape(rows: int, columns: int, size: str) -> None:
    thumb = parameters.rendered(WHERE, [("window", "40,400,linear")], None, thumbnail=True)
    assert not thumb.sized
    out = parameters.shaped(thumb, rows, columns)
    assert dict(out.params) == {"viewport": size, "window": "40,400,linear"}
    given = parameters.rendered(WHERE, [("viewport", "50,50")], None, thumbnail=True)
    assert parameters.shaped(given, rows, columns) == given  # the caller's viewport is the caller's
    frame = parameters.rendered(WHERE, [], None, thumbnail=False)
    assert frame.sized and parameters.shaped(frame, rows, columns) == frame


def test_qido_keys_cannot_leave_the_study_in_the_path() -> None:
    study = parameters.target("1.2.3")
    ask = parameters.qido(study, [("Modality", "CT"), ("limit", "10"), ("includefield", "00080060,BodyPartExamined")],
                          None)  # fmt: skip
    assert ask.path == "studies/1.2.3/series" and ("limit", "10") in ask.params
    for key in ("StudyInstanceUID", "studyinstanceuid", "0020000D"):
        with pytest.raises(BadRequestError, match="fixed by the path"):
            parameters.qido(study, [(key, "9.9")], None)
    with pytest.raises(BadRequestError, match="fixed by the path"):
        parameters.qido(parameters.target("1.2.3", "1.2.3.4"), [("SeriesInstanceUID", "9.9")], None)
    assert parameters.qido(None, [("StudyInstanceUID", "1.2,1.3")], None).path == "studies"
    for params in ([("limit", "0")], [("limit", "x")], [("offset", "-1")], [("fuzzymatching", "yes")],
                   [("includefield", "a b")], [("_format", "json")], [("StudyInstanceUID", "1.x")]):  # fmt: skip
        with pytest.raises(BadRequestError):
            parameters.qido(None, params, None)
    with pytest.raises(NotAcceptableError):
        parameters.qido(study, [], 'multipart/related; type="application/dicom+xml"')


def test_retrieve_is_multipart_dicom_with_the_transfer_syntax_asked_for() -> None:
    assert parameters.retrieve(WHERE, [], None).accept == parameters.MULTIPART_DICOM
    asked = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'
    assert parameters.retrieve(WHERE, [], asked).accept == asked
    assert parameters.retrieve(WHERE, [], "*/*").accept == parameters.MULTIPART_DICOM
    with pytest.raises(NotAcceptableError):
        parameters.retrieve(WHERE, [], "application/dicom+json")
    with pytest.raises(BadRequestError, match="transfer-syntax"):
        parameters.retrieve(WHERE, [], 'multipart/related; type="application/dicom"; transfer-syntax=x"y')
    with pytest.raises(BadRequestError, match="no query parameters"):
        parameters.retrieve(WHERE, [("x", "1")], None)


# ------------------------------------------------------------------------------------------ rewriting
OLD = b"http://10.0.0.5:8042/dicom-web/"
NEW = b"https://registry.example.cn/dicomweb/"


@given(st.lists(st.sampled_from([b'"', OLD, OLD[:9], OLD[5:], b"studies/1.2", b"\n\t", NEW]), max_size=40),
       st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=20))  # fmt: skip
def test_the_pacs_root_is_replaced_however_the_chunks_fall(pieces: list[bytes], cuts: list[int]) -> None:
    text = b"".join(pieces)
    rewriter = PrefixRewriter([OLD], NEW)
    out, at = b"", 0
    for n in cuts * (len(text) // max(sum(cuts), 1) + 1):
        out += rewriter.feed(text[at : at + n])
        at += n
        if at >= len(text):
            break
    out += rewriter.feed(text[at:]) + rewriter.flush()
    assert out == text.replace(OLD, NEW)


def test_what_was_written_is_not_rewritten_again() -> None:
    rewriter = PrefixRewriter([b"http://p/"], b"http://p/gw/")
    assert rewriter.feed(b"a http://p/x") + rewriter.flush() == b"a http://p/gw/x"


# ------------------------------------------------------------------------------------------ the operator's list
def test_the_pacs_list_needs_a_hospital_and_an_http_base() -> None:
    found = PacsDirectory.parse(
        '{"e1": {"organization": "hosp-a", "base": "http://127.0.0.1:8042/dicom-web/", "authorization": "Bearer t"},'
        ' "https://pacs.b.example.cn/dicom-web": {"organization": "hosp-b", "base": "http://10.0.0.2/dw",'
        ' "advertised_base": "http://pacs-b:8042/dicom-web", "thumbnail": "native", "timeout": 5}}'
    )
    a = found.find("e1", "https://elsewhere.example.cn")
    assert (
        a is not None and a.base == "http://127.0.0.1:8042/dicom-web" and a.headers == (("Authorization", "Bearer t"),)
    )
    b = found.find("other-id", "https://pacs.b.example.cn/dicom-web/")
    assert b is not None and b.organization == "hosp-b" and b.thumbnail == "native" and b.timeout == 5.0
    assert b.advertised == ("http://10.0.0.2/dw", "http://pacs-b:8042/dicom-web")
    assert found.find("nothing", "https://pacs.c.example.cn/dicom-web") is None
    assert not PacsDirectory.parse(None) and not PacsDirectory.parse("  ")
    for bad in ('{"e": {"base": "http://x"}}', '{"e": {"organization": "o", "base": "ftp://x"}}',
                '{"e": {"organization": "o", "base": "http://x", "timeout": 0}}',
                '{"e": {"organization": "o", "base": "http://x", "colour": "red"}}',
                '{"e": {"organization": "o", "base": "http://x", "authorization": "a", "username": "u"}}',
                '{"e": {"organization": "o", "base": "http://x", "thumbnail": "big"}}', "[1]", "{nope"):  # fmt: skip
        with pytest.raises(PacsConfigError):
            PacsDirectory.parse(bad)


# ------------------------------------------------------------------------------------------ the policy
ENDPOINT = {"resourceType": "Endpoint", "status": "active", "connectionType": {"code": "dicom-wado-rs"},
            "managingOrganization": {"reference": "Organization/hosp-a"}}  # fmt: skip
STUDY = {"resourceType": "ImagingStudy", "status": "available", "endpoint": [{"reference": "Endpoint/e1"}]}


def test_images_are_forwarded_only_to_the_issuers_own_configured_pacs() -> None:
    check_images(STUDY, "hosp-a", ENDPOINT, "hosp-a")
    refusals = [
        (STUDY, "hosp-a", None, "hosp-a", "no WADO-RS Endpoint"),
        (STUDY, "hosp-b", ENDPOINT, "hosp-a", "not managed by the hospital"),
        (STUDY, "hosp-a", {**ENDPOINT, "status": "off"}, "hosp-a", "Endpoint is off"),
        (STUDY, "hosp-a", ENDPOINT, None, "not configured"),
        (STUDY, "hosp-a", ENDPOINT, "hosp-b", "belongs to another hospital"),
    ]
    for study, issuer, endpoint, pacs, says in refusals:
        with pytest.raises(BadGatewayError, match=says):
            check_images(study, issuer, endpoint, pacs)
    with pytest.raises(NotFoundError, match="withdrawn"):
        check_images({**STUDY, "status": "entered-in-error"}, "hosp-a", ENDPOINT, "hosp-a")


def test_only_rendered_images_outside_break_glass_may_be_kept_by_the_browser() -> None:
    assert cache_control(True, None, 300) == "private, max-age=300"
    assert cache_control(True, BreakGlass("急诊"), 300) == "no-store"
    assert cache_control(False, None, 300) == "no-store"
    assert cache_control(True, None, 0) == "no-store"
