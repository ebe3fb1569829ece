"""The pages' words in Chinese (the default) and English (``?lang=en``, remembered in the session).

Names that come from the data (hospital, item, reason) are shown as the data has them; the catalog's English item
names are used when the page is in English.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

LANGUAGES = ("zh", "en")

_TEXT: dict[str, tuple[str, str]] = {
    # (zh, en)
    "app": ("区域检查检验结果互认平台", "Regional Exam & Lab Result Recognition"),
    "skip": ("跳到正文", "Skip to content"),
    "language": ("English", "中文"),
    "portal": ("我的报告", "My reports"),
    "clinician": ("医生开单", "Order screen"),
    "stats": ("互认统计", "Statistics"),
    "sign_in": ("登录", "Sign in"),
    "sign_out": ("退出", "Sign out"),
    "signed_in_as": ("当前用户", "Signed in as"),
    "account": ("账号", "Account"),
    "secret": ("密码", "Password"),
    "sign_in_portal": ("患者登录", "Patient sign-in"),
    "sign_in_clinician": ("医生登录", "Clinician sign-in"),
    "sign_in_stats": ("管理人员登录", "Manager sign-in"),
    "sign_in_hint": (
        "使用平台发放的账号和密码登录（演示账号见 ./scripts/serve 的输出）。",
        "Use the account issued by the platform (demo accounts are printed by ./scripts/serve).",
    ),
    "bad_credentials": ("账号或密码不正确。", "The account or password is not correct."),
    "wrong_kind": ("此账号不能登录本页面。", "This account cannot sign in here."),
    "too_many": ("尝试次数过多，请稍后再试。", "Too many attempts; please try again later."),
    "csrf": ("页面已过期，请重试。", "The page expired; please try again."),
    "session_expired": ("登录已过期，请重新登录。", "Your session expired; please sign in again."),
    # portal
    "my_reports": ("我的检查检验报告", "My exam and lab reports"),
    "national_id": ("身份证号", "Resident ID"),
    "mrn": ("就诊号", "Medical record numbers"),
    "gender": ("性别", "Sex"),
    "birth": ("出生日期", "Date of birth"),
    "filters": ("筛选", "Filter"),
    "hospital": ("医院", "Hospital"),
    "kind": ("类别", "Kind"),
    "item": ("项目", "Item"),
    "all": ("全部", "All"),
    "lab": ("检验", "Lab"),
    "imaging": ("检查", "Imaging"),
    "apply": ("筛选", "Apply"),
    "reset": ("清除", "Clear"),
    "date": ("日期", "Date"),
    "status": ("状态", "Status"),
    "hr_mark": ("互认标识", "HR mark"),
    "valid_until": ("互认有效期至", "Recognizable until"),
    "valid": ("有效", "valid"),
    "expired": ("已过期", "expired"),
    "abnormal": ("异常", "abnormal"),
    "abnormal_n": ("项异常", "abnormal"),
    "no_reports": ("没有符合条件的报告。", "No reports match."),
    "reports_count": ("份报告，来自", "reports from"),
    "hospitals": ("家医院", "hospitals"),
    "open": ("查看", "Open"),
    "trends": ("趋势", "Trends"),
    "trend": ("趋势图", "Trend"),
    "who_viewed": ("谁查看了我的记录", "Who viewed my records"),
    "back": ("返回", "Back"),
    "result": ("结果", "Result"),
    "unit": ("单位", "Unit"),
    "ref_range": ("参考范围", "Reference range"),
    "flag": ("提示", "Flag"),
    "conclusion": ("结论", "Conclusion"),
    "study": ("影像检查", "Imaging study"),
    "modality": ("检查方式", "Modality"),
    "body_part": ("部位", "Body part"),
    "series": ("序列数", "Series"),
    "images": ("图像数", "Images"),
    "view_images": ("查看影像", "View images"),
    "view_images_break_glass": ("查看影像（紧急授权）", "View images (emergency access)"),
    # the image viewer (registry/web/viewer_pages.py, static/viewer.js)
    "viewer_title": ("影像浏览", "Images"),
    "back_to_report": ("返回报告", "Back to the report"),
    "no_images": ("该报告没有影像检查。", "This report has no imaging study."),
    "viewer_series": ("序列", "Series"),
    "viewer_image": ("图像", "Image"),
    "viewer_windows": ("窗宽窗位", "Window"),
    "window_default": ("默认", "Default"),
    "window_lung": ("肺窗", "Lung"),
    "window_mediastinum": ("纵隔窗", "Mediastinum"),
    "window_bone": ("骨窗", "Bone"),
    "viewer_prev": ("上一张", "Previous image"),
    "viewer_next": ("下一张", "Next image"),
    "viewer_hint": (
        "滚动鼠标滚轮、按 ↑ ↓ 键或在图像上上下滑动逐张浏览；PageUp / PageDown 每次 10 张，Home / End 到首张 / 末张。",
        "Scroll with the mouse wheel, the ↑ ↓ keys or a swipe on the image; PageUp / PageDown move ten images, "
        "Home / End go to the first / last.",
    ),
    "viewer_source": (
        "图像由平台从出具医院的影像系统（PACS）实时调阅，平台不保存图像；每次查看都记入审计日志。",
        "The registry fetches the images from the issuing hospital's PACS as you look; it keeps none, and every "
        "viewing is in the audit trail.",
    ),
    "viewer_no_conclusion": ("尚无报告结论。", "No report conclusion yet."),
    "viewer_loading": ("正在加载影像…", "Loading the images…"),
    "viewer_err_401": (
        "登录已过期，请重新登录后再查看影像。",
        "Your session has expired: sign in again to see the images.",
    ),
    "viewer_err_403": ("您无权查看这些影像。", "You may not view these images."),
    "viewer_err_404": (
        "出具医院的影像系统中没有这些图像。",
        "The issuing hospital's imaging system does not have these images.",
    ),
    "viewer_err_502": (
        "影像暂时无法调阅：出具医院的影像系统（PACS）未接入本平台或无法连接。",
        "The images are not reachable: the issuing hospital's imaging system (PACS) is not connected to the registry "
        "or does not answer.",
    ),
    "viewer_err_504": (
        "出具医院的影像系统响应超时，请稍后再试。",
        "The hospital's imaging system took too long to answer; try again later.",
    ),
    "viewer_err_other": ("影像加载失败。", "The images could not be loaded."),
    "viewer_no_series": ("该检查没有可显示的图像。", "This study has no images to show."),
    "viewer_images_n": ("{n} 张", "{n} images"),
    "viewer_series_n": ("序列 {n}", "Series {n}"),
    "viewer_frame_of": ("第 {i} / {n} 张", "Image {i} of {n}"),
    "viewer_thumb_failed": ("无缩略图", "no preview"),
    "issued": ("报告时间", "Issued"),
    "effective": ("检查检验时间", "Performed"),
    "points": ("个数据点", "points"),
    "other_units": ("个数值单位不同，未画入图中", "values in another unit are not drawn"),
    "no_trend": ("此项目还没有可画出的数值。", "No values to draw for this item yet."),
    "when": ("时间", "When"),
    "who": ("查看者", "Who"),
    "what": ("内容", "What"),
    "no_access": ("除您本人外，还没有人查看过您的记录。", "Nobody but you has viewed your records."),
    "records_of": ("记录所属：", "Records of "),
    "access_intro": (
        "下表列出您本人以外的人员每一次查看您记录的时间、医院和内容。紧急授权（破窗）查看以红色标出，并附查看理由。",
        "Every time someone other than you looked at your records: when, which hospital, and what. Emergency "
        "(break-glass) accesses are marked in red, with the reason given.",
    ),
    "break_glass_count": ("次紧急授权（破窗）查看", "emergency (break-glass) accesses"),
    "break_glass_mark": ("紧急授权", "Emergency access"),
    "break_glass_why": ("理由：", "Reason: "),
    "notifications_sent": ("发给您的通知", "Notifications sent to you"),
    "no_notifications": ("还没有发给您的通知。", "No notifications have been sent to you."),
    "channel": ("方式", "Channel"),
    "channel_sms": ("短信", "SMS"),
    "channel_email": ("电子邮件", "email"),
    "channel_app": ("应用消息", "app message"),
    "channel_push": ("应用推送", "app push"),
    "status_final": ("正式报告", "final"),
    "status_corrected": ("已更正", "corrected"),
    "status_amended": ("已修订", "amended"),
    "status_preliminary": ("初步报告", "preliminary"),
    "status_entered-in-error": ("已撤回", "withdrawn"),
    "status_cancelled": ("已取消", "cancelled"),
    "status_registered": ("已登记", "registered"),
    "status_appended": ("已补充", "appended"),
    "not_found": ("找不到该页面或报告。", "That page or report does not exist."),
    "forbidden": ("您无权查看此内容。", "You may not view this."),
    "outside_care": (
        "找不到该报告，或该患者在本院没有就诊记录（不在本院诊疗范围内）。",
        "This report does not exist, or the patient has no record at your hospital (outside your care context).",
    ),
    "break_glass_accesses": ("紧急授权查看", "Emergency (break-glass) accesses"),
    "sharing_paused": ("患者已限制共享的开单", "Orders where the patient had paused sharing"),
    "consent": ("共享授权", "Sharing consent"),
    "consent_intro": (
        "您的检查检验结果默认在本区域医院间共享，以便互认、免于重复检查。您可以暂停向某家医院或所有其他医院共享，随时恢复；"
        "出具报告的医院和您本人始终可以查看。紧急情况下医生可说明理由后破窗查看，记录在“谁查看了我的记录”中。",
        "Your results are shared among the region's hospitals by default, so they can be recognized instead of "
        "repeated. You can pause sharing with one hospital or all other hospitals, and resume at any time; the "
        "hospital that issued a result and you always see it. In an emergency a clinician may break the glass with "
        "a reason; it is listed under “Who viewed my records”.",
    ),
    "consent_all": ("所有其他医院", "All other hospitals"),
    "consent_shared": ("共享中", "Shared"),
    "consent_paused": ("已暂停", "Paused"),
    "consent_pause": ("暂停共享", "Pause sharing"),
    "consent_resume": ("恢复共享", "Resume sharing"),
    "consent_paused_all": ("已暂停向所有其他医院共享", "Sharing with all other hospitals is paused"),
    "consent_sensitive": ("敏感项目单独同意", "Separate consent for sensitive items"),
    "consent_sensitive_intro": (
        "HIV、梅毒、肝炎血清学等敏感项目的结果，只有在您单独同意后才会共享给其他医院（个人信息保护法第二十八、二十九条）。",
        "Results of sensitive items (HIV, syphilis, hepatitis serology and the like) are shared with other hospitals "
        "only with your separate consent (PIPL Art. 28–29).",
    ),
    "consent_sensitive_on": ("已同意共享敏感项目", "Sensitive items are shared"),
    "consent_sensitive_off": ("不共享敏感项目（默认）", "Sensitive items are not shared (the default)"),
    "consent_share_sensitive": ("同意共享敏感项目", "Share sensitive items"),
    "consent_keep_sensitive": ("撤回，不再共享敏感项目", "Withdraw: keep sensitive items unshared"),
    "consent_saved": ("已保存。", "Saved."),
    "consent_record": ("记录", "Record"),
    "bad_request": ("无法完成该操作。", "That change could not be made."),
    "break_glass_title": ("紧急授权查看（破窗）", "Emergency access (break the glass)"),
    "break_glass_explain": (
        "仅在诊疗确有需要时使用。请写明理由：本次查看将记入审计日志，患者可在“谁查看了我的记录”中看到，并计入统计。",
        "Only when the patient's care needs it. State why: this access is audited, shown to the patient in "
        "“who viewed my records” and counted in the statistics.",
    ),
    "break_glass_reason": ("查看理由", "Reason"),
    "break_glass_submit": ("紧急授权查看", "Open with emergency access"),
    "break_glass_banner": ("紧急授权查看：", "Emergency access: "),
    # portal: notifications (registry/web/notification_pages.py)
    "notifications": ("报告提醒", "Report notifications"),
    "notify_settings": ("提醒设置", "Settings"),
    "notify_explain": (
        "有新的正式报告或报告更正时提醒您。提醒只说明报告已出，不含结果、诊断或您的姓名；敏感项目（如艾滋病、梅毒、肝炎检测）"
        "不写项目名称。短信发送到您在城市健康账号中登记的手机号。",
        "You are told when a final report or a correction arrives. A notification only says that a report is ready: "
        "no results, no diagnosis, not your name; sensitive tests (such as HIV, syphilis, hepatitis) are never "
        "named. Text messages go to the phone number of your city health account.",
    ),
    "notify_channels": ("提醒方式", "Channels"),
    "notify_sms": ("短信", "Text message (SMS)"),
    "notify_push": ("手机应用推送", "App push"),
    "notify_channel": ("方式", "Channel"),
    "notify_language": ("提醒语言", "Language of the notifications"),
    "notify_save": ("保存", "Save"),
    "notify_saved": ("已保存。", "Saved."),
    "notify_sent": ("已发送的提醒", "Notifications sent"),
    "notify_none": ("还没有发送过提醒。", "No notifications yet."),
    "notify_status_queued": ("发送中", "on its way"),
    "notify_status_sent": ("已发送", "sent"),
    "notify_status_dead": ("发送失败", "failed"),
    "notify_bad_language": ("请选择中文或英文。", "Choose Chinese or English."),
    # clinician
    "patient": ("患者", "Patient"),
    "find_patient": ("按本院就诊号查找患者", "Find a patient by this hospital's MRN"),
    "find": ("查找", "Find"),
    "orders": ("本次开单", "Orders"),
    "add_order": ("添加检查检验项目（名称、缩写或编码）", "Add an order (name, abbreviation or code)"),
    "no_orders": ("尚未添加医嘱。", "No orders yet."),
    "sign": ("签署医嘱", "Sign orders"),
    "accept": ("互认", "Recognize"),
    "decline": ("不互认", "Do not recognize"),
    "reason": ("不互认原因", "Reason"),
    "comment": ("说明", "Comment"),
    "confirm_decline": ("确认不互认", "Confirm"),
    "remove": ("删除", "Remove"),
    # stats
    "period": ("统计期间", "Period"),
    "date_placeholder": ("年-月-日", "YYYY-MM-DD"),
    "date_format": ("日期格式：年-月-日，例如 2026-11-01。", "Dates as year-month-day, e.g. 2026-11-01."),
    "start": ("开始", "From"),
    "end": ("结束", "To"),
    "ordering_hospital": ("开单医院", "Ordering hospital"),
    "issuing_hospital": ("出具医院", "Issuing hospital"),
    "download_csv": ("下载 CSV", "Download CSV"),
    "orders_checked": ("核对医嘱", "Orders checked"),
    "recognizable_found": ("发现可互认", "Recognizable found"),
    "recognized": ("已互认", "Recognized"),
    "declined": ("不互认", "Declined"),
    "refusals": ("计入不互认", "Counted refusals"),
    "recognition_rate": ("互认率", "Recognition rate"),
    "patients_benefited": ("受益患者", "Patients benefited"),
    "money_saved": ("节省费用（元）", "Money saved (CNY)"),
    "recognized_withdrawn_result": ("其中互认时结果已撤回", "of which the result was withdrawn"),
    "duplicates": ("重复开单", "Duplicate orders"),
    "duplicates_found": ("发现本院重复开单", "Duplicate orders found"),
    "duplicates_avoided": ("避免重复开单", "Duplicates avoided"),
    "duplicates_declined": ("仍重复开单", "Duplicates kept"),
    "duplicate_money_saved": ("避免重复节省（元）", "Saved by avoiding duplicates (CNY)"),
    "duplicates_note": (
        "本院已有有效结果的重复开单单独统计，不计入互认、互认率、受益患者和节省费用；互认时结果已被撤回的，"
        "计入已互认，但不计入受益患者和节省费用。",
        "A repeat of the ordering hospital's own valid result is counted as a duplicate order, never as a "
        "recognition, in the rate, patients or money saved; a recognition whose result had been withdrawn counts as "
        "recognized but not in patients or money saved.",
    ),
    "by_hospital": ("各开单医院", "By ordering hospital"),
    "by_item": ("各项目", "By item"),
    "not_in_catalog": ("不在互认目录", "not in the catalog"),
    "per_day": ("每日互认", "Recognitions per day"),
    "rate_by_hospital": ("各医院互认率", "Recognition rate by hospital"),
    "reasons": ("不互认原因", "Reasons for not recognizing"),
    "top_items": ("互认最多的项目", "Top items"),
    "count": ("次数", "Count"),
    "not_counted": ("不计入", "not counted"),
    "no_data": ("所选期间没有数据。", "No data in this period."),
    "rate_note": (
        "互认率 = 已互认 ÷（已互认 + 计入不互认的拒绝）；原因 98、99 记录但不计入。",
        "Rate = recognized ÷ (recognized + counted refusals); reasons 98 and 99 are recorded but not counted.",
    ),
}

TEXT: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {lang: MappingProxyType({k: v[i] for k, v in _TEXT.items()}) for i, lang in enumerate(LANGUAGES)}
)


def translator(lang: str) -> Mapping[str, str]:
    return TEXT.get(lang, TEXT["zh"])


_RESOURCES = {
    "DiagnosticReport": ("检查检验报告", "reports"),
    "Observation": ("检验结果", "results"),
    "ImagingStudy": ("影像检查", "imaging studies"),
    "Patient": ("基本信息", "personal details"),
    "ServiceRequest": ("医嘱", "orders"),
    "AuditEvent": ("访问记录", "access log"),
    "Consent": ("授权设置", "sharing choices"),
}

_SERVICES = {
    "hr-order-select": ("开单时核对了您的既往结果", "checked your earlier results while ordering a test"),
    "hr-order-sign": ("开单时核对了您的既往结果", "checked your earlier results while ordering a test"),
    "hr-patient-view": (
        "接诊时查看了您在其他医院可互认的结果",
        "looked at your results from other hospitals when seeing you",
    ),
}


def _decision(detail: str, en: bool) -> str:
    if detail.startswith("decision recognized"):
        return (
            "recorded a recognition decision: used your earlier result instead of repeating the test"
            if en
            else "记录了互认决定：采用您的既往结果，不再重复检查"
        )
    if detail.startswith("decision declined"):
        return "recorded a recognition decision: the test is repeated" if en else "记录了互认决定：仍需重新检查"
    return "recorded a recognition decision" if en else "记录了互认决定"


def describe_access(
    interaction: str,
    resource_type: str,
    lang: str,
    purpose: str | None = None,
    *,
    resource_id: str = "",
    detail: str = "",
) -> str:
    """An audit row in words a patient understands ("查询了您的检查检验报告")."""
    en = lang == "en"
    if purpose == "BTG":
        what = describe_access(interaction, resource_type, lang, None, resource_id=resource_id, detail=detail)
        return f"{what} — emergency access (break the glass)" if en else f"紧急授权（破窗）：{what}"
    if resource_type == "CDS Hooks":
        zh_text, en_text = _SERVICES.get(resource_id, _SERVICES["hr-order-select"])
        return en_text if en else zh_text
    if resource_type == "CDS Hooks feedback":
        return _decision(detail, en)
    if interaction == "operation" and resource_type == "Patient":  # IHE PIXm: which numbers the hospitals know
        return (
            "looked up which hospitals know you and your patient numbers there (identity matching)"
            if en
            else "核对了您在各医院的身份和就诊号（身份匹配）"
        )
    if interaction == "operation" and resource_type == "ServiceRequest":
        if detail.startswith("decision"):
            return _decision(detail, en)
        return "checked your earlier results while ordering a test" if en else "开单时核对了您的既往结果"
    if resource_type == "ImagingStudy" and detail.startswith("DICOMweb"):  # the gateway: one row per study opened
        return "viewed the images of your imaging study" if en else "查看了您的影像检查图像"
    zh_name, en_name = _RESOURCES.get(resource_type, (resource_type or "记录", resource_type or "records"))
    if interaction in ("read", "vread", "history-instance"):
        return f"opened your {en_name}" if en else f"查看了您的{zh_name}"
    if interaction in ("search-type", "search-system"):
        return f"searched your {en_name}" if en else f"查询了您的{zh_name}"
    return f"looked at your {en_name}" if en else f"查阅了您的{zh_name}"
