"""English and Simplified Chinese for LearnHub's own pages: a small message catalog.

The language comes from ``?lang=`` (which the pages store in a cookie), else from that cookie,
else from the browser's ``Accept-Language``. Messages are looked up by a short key; a key missing
from one language falls back to English, so a page never shows a raw key.
Course content (titles, summaries) is not translated: it comes from ``course.yaml`` as written.
"""

# Chinese text is written with Chinese (full-width) punctuation, as it should be.
# ruff: noqa: RUF001

from __future__ import annotations

from collections.abc import Callable

from hub.i18n_jobs import JOB_MESSAGES

#: Languages the pages are written in; the first is the default.
LANGUAGES: tuple[str, ...] = ("en", "zh-CN")
#: How each language names itself, for the toggle.
LANGUAGE_NAMES = {"en": "English", "zh-CN": "简体中文"}
#: Cookie that remembers the visitor's choice.
LANG_COOKIE = "learnhub-lang"

Translator = Callable[..., str]

MESSAGES: dict[str, dict[str, str]] = {
    "site_name": {"en": "LearnHub", "zh-CN": "LearnHub"},
    "nav_catalog": {"en": "Catalog", "zh-CN": "课程目录"},
    "nav_home": {"en": "My courses", "zh-CN": "我的课程"},
    "nav_purchases": {"en": "Purchases", "zh-CN": "购买记录"},
    "nav_admin": {"en": "Operator dashboard", "zh-CN": "运营看板"},
    "nav_language": {"en": "Language", "zh-CN": "语言"},
    "sign_in": {"en": "Sign in", "zh-CN": "登录"},
    "sign_in_to_buy": {"en": "Sign in to buy", "zh-CN": "登录后购买"},
    "signed_in_as": {"en": "Signed in as {name}", "zh-CN": "当前用户：{name}"},
    "catalog_title": {"en": "Course catalog", "zh-CN": "课程目录"},
    "catalog_intro": {
        "en": "Hands-on programming courses. Each course runs in its own JupyterLab with the "
        "notebooks, exercises and autograded problem sets.",
        "zh-CN": "动手实践的编程课程。每门课程都在独立的 JupyterLab 中运行，"
        "包含讲义、练习和自动评分的习题集。",
    },
    "catalog_empty": {"en": "No courses are on offer yet.", "zh-CN": "目前还没有开设课程。"},
    "instructors": {"en": "Instructors", "zh-CN": "讲师"},
    "price": {"en": "Price", "zh-CN": "价格"},
    "free": {"en": "Free", "zh-CN": "免费"},
    "syllabus": {"en": "Syllabus", "zh-CN": "课程大纲"},
    "outcomes": {"en": "What you will build", "zh-CN": "你将完成的作品"},
    "assignments": {"en": "Assignments and deadlines", "zh-CN": "作业与截止日期"},
    "due": {"en": "due {date}", "zh-CN": "截止：{date}"},
    "no_deadline": {"en": "no deadline", "zh-CN": "无截止日期"},
    "details": {"en": "Details", "zh-CN": "详情"},
    "buy": {"en": "Buy for {price}", "zh-CN": "购买（{price}）"},
    "open": {"en": "Open the course", "zh-CN": "进入课程"},
    "you_have_access": {"en": "You have access", "zh-CN": "你已拥有此课程"},
    "you_teach": {"en": "You teach this course", "zh-CN": "你是此课程的讲师"},
    "instructor_dashboard": {"en": "Instructor dashboard", "zh-CN": "讲师看板"},
    "back_to_catalog": {"en": "Back to the catalog", "zh-CN": "返回课程目录"},
    "not_found_title": {"en": "Not found", "zh-CN": "未找到"},
    "no_such_course": {"en": "There is no course {course}.", "zh-CN": "没有名为 {course} 的课程。"},
    # checkout
    "checkout_title": {"en": "Checkout", "zh-CN": "结账"},
    "success_title": {"en": "Thank you!", "zh-CN": "感谢购买！"},
    "success_body": {
        "en": "You now have access to {what}.",
        "zh-CN": "你现在可以学习 {what} 了。",
    },
    "pending_title": {"en": "Payment pending", "zh-CN": "付款处理中"},
    "pending_body": {
        "en": "Your payment is being processed. Access to {what} follows as soon as it clears; "
        "you do not need to pay again.",
        "zh-CN": "你的付款正在处理中。款项到账后即可访问 {what}，无需重复付款。",
    },
    "failed_title": {"en": "Payment not completed", "zh-CN": "付款未完成"},
    "failed_body": {
        "en": "This payment did not go through. Nothing was charged.",
        "zh-CN": "这笔付款没有成功，未产生任何扣款。",
    },
    "confirm_later_title": {"en": "Payment received", "zh-CN": "已收到付款"},
    "confirm_later_body": {
        "en": "We could not confirm it with the payment provider yet; access follows within "
        "minutes.",
        "zh-CN": "暂时无法向支付服务确认，访问权限将在几分钟内开通。",
    },
    "cancel_title": {"en": "Checkout cancelled", "zh-CN": "已取消结账"},
    "cancel_body": {"en": "Nothing was charged.", "zh-CN": "未产生任何扣款。"},
    "refused_title": {"en": "Nothing to buy", "zh-CN": "无需购买"},
    "already_have_access": {
        "en": "You already have access to {what}; there is nothing to buy.",
        "zh-CN": "你已经拥有 {what}，无需再次购买。",
    },
    "unknown_checkout_title": {"en": "Unknown checkout", "zh-CN": "未知的结账"},
    "unknown_checkout_body": {
        "en": "This link has no checkout session, or it is not yours.",
        "zh-CN": "此链接没有对应的结账记录，或不属于你。",
    },
    "payment_unavailable_title": {"en": "Payment unavailable", "zh-CN": "支付暂不可用"},
    "payment_unavailable_body": {
        "en": "Please try again in a minute.",
        "zh-CN": "请稍后再试。",
    },
    "demo_title": {"en": "Demo checkout", "zh-CN": "演示结账"},
    "demo_notice": {
        "en": "This is the offline demo checkout: no money moves and no card is needed. "
        "Pay and Refund send genuinely signed payment events through the same path real "
        "payments take.",
        "zh-CN": "这是离线演示结账：不会产生任何真实扣款，也不需要银行卡。"
        "“付款”和“退款”会通过与真实支付相同的流程发送经过签名的支付事件。",
    },
    "demo_pay": {"en": "Pay (demo)", "zh-CN": "付款（演示）"},
    "demo_refund": {"en": "Refund (demo)", "zh-CN": "退款（演示）"},
    "demo_refunded_title": {"en": "Refunded (demo)", "zh-CN": "已退款（演示）"},
    "demo_refunded_body": {"en": "The payment was refunded.", "zh-CN": "这笔付款已退款。"},
    "demo_nothing_title": {"en": "Nothing to do", "zh-CN": "无可执行的操作"},
    "demo_nothing_body": {
        "en": "That action does not apply now.",
        "zh-CN": "该操作当前不适用。",
    },
    "item": {"en": "Item", "zh-CN": "项目"},
    "amount": {"en": "Amount", "zh-CN": "金额"},
    "status": {"en": "Status", "zh-CN": "状态"},
    "date": {"en": "Date", "zh-CN": "日期"},
    "plan": {"en": "plan {plan}", "zh-CN": "会员计划 {plan}"},
    # purchases
    "purchases_title": {"en": "Purchase history", "zh-CN": "购买记录"},
    "purchases_empty": {
        "en": "You have not bought anything yet.",
        "zh-CN": "你还没有购买任何课程。",
    },
    "manage_membership": {"en": "Manage membership", "zh-CN": "管理会员"},
    "portal_unavailable": {
        "en": "The billing portal is not available right now.",
        "zh-CN": "账单管理页面暂不可用。",
    },
    "status_active": {"en": "active", "zh-CN": "有效"},
    "status_pending": {"en": "payment pending", "zh-CN": "付款处理中"},
    "status_past_due": {"en": "past due", "zh-CN": "逾期未付"},
    "status_refunded": {"en": "refunded", "zh-CN": "已退款"},
    "status_disputed": {"en": "disputed", "zh-CN": "争议中"},
    "status_revoked": {"en": "access ended", "zh-CN": "访问已结束"},
    "status_open": {"en": "not paid", "zh-CN": "未付款"},
    # dashboards
    "forbidden_title": {"en": "Not allowed", "zh-CN": "无权访问"},
    "forbidden_instructor": {
        "en": "Only the instructors of this course and hub admins can see this dashboard.",
        "zh-CN": "只有本课程的讲师和管理员可以查看此看板。",
    },
    "forbidden_admin": {
        "en": "Only hub admins can see the operator dashboard.",
        "zh-CN": "只有管理员可以查看运营看板。",
    },
    "enrolment_over_time": {"en": "Enrolment over time", "zh-CN": "选课人数变化"},
    "enrolled_learners": {"en": "Learners with access", "zh-CN": "拥有访问权限的学员"},
    "active_vs_revoked": {"en": "Active and ended access", "zh-CN": "有效与已结束的访问"},
    "active": {"en": "active", "zh-CN": "有效"},
    "revoked": {"en": "ended", "zh-CN": "已结束"},
    "pending": {"en": "pending", "zh-CN": "处理中"},
    "revenue": {"en": "Revenue", "zh-CN": "收入"},
    "revenue_course_note": {
        "en": "Paid one-off purchases of this course, minus refunds.",
        "zh-CN": "本课程单次购买的已付款金额，扣除退款。",
    },
    "submissions": {"en": "Submissions per assignment", "zh-CN": "各作业提交数"},
    "scores": {"en": "Score distribution", "zh-CN": "成绩分布"},
    "no_submissions_yet": {
        "en": "No submissions collected yet.",
        "zh-CN": "还没有收取任何提交。",
    },
    "late_title": {"en": "Late submissions", "zh-CN": "逾期提交"},
    "reviews": {"en": "Reviews", "zh-CN": "评价"},
    "announcements": {"en": "Announcements", "zh-CN": "公告"},
    "qa": {"en": "Questions and answers", "zh-CN": "问答"},
    "qa_title": {"en": "Your question, in one line", "zh-CN": "你的问题（一句话）"},
    "qa_body": {
        "en": "Details: what you tried, what happened",
        "zh-CN": "详情：你尝试了什么，结果如何",
    },
    "qa_ask": {"en": "Ask", "zh-CN": "提问"},
    "qa_answers": {"en": "answers", "zh-CN": "个回答"},
    "qa_accepted": {"en": "accepted", "zh-CN": "已采纳"},
    "qa_none": {"en": "No questions yet.", "zh-CN": "还没有问题。"},
    "qa_vote": {"en": "Useful", "zh-CN": "有用"},
    "qa_accept": {"en": "Accept", "zh-CN": "采纳"},
    "qa_your_answer": {"en": "Your answer", "zh-CN": "你的回答"},
    "qa_answer": {"en": "Answer", "zh-CN": "回答"},
    "qa_needs_access": {
        "en": "The Q&A of a course is for the members who have it.",
        "zh-CN": "课程问答仅对拥有该课程的会员开放。",
    },
    "qa_refused_title": {"en": "Not done", "zh-CN": "未完成"},
    "new_announcement": {"en": "New announcement to the course", "zh-CN": "给课程发布新公告"},
    "post_announcement": {"en": "Post", "zh-CN": "发布"},
    "announcement_invalid_title": {"en": "Announcement not posted", "zh-CN": "公告未发布"},
    "no_reviews": {"en": "No reviews yet.", "zh-CN": "还没有评价。"},
    "average_rating": {"en": "Average rating", "zh-CN": "平均评分"},
    "your_review": {"en": "Your review", "zh-CN": "你的评价"},
    "rating_label": {"en": "Rating (1 to 5)", "zh-CN": "评分（1 到 5）"},
    "review_text_label": {
        "en": "What was good, what could be better?",
        "zh-CN": "哪些好，哪些可以更好？",
    },
    "save_review": {"en": "Save review", "zh-CN": "保存评价"},
    "rate_limited_title": {"en": "Too many requests", "zh-CN": "请求过于频繁"},
    "rate_limited_body": {
        "en": "You did this too often in a short time. Please wait {seconds} seconds and try "
        "again.",
        "zh-CN": "您在短时间内操作过于频繁。请等待 {seconds} 秒后再试。",
    },
    "review_needs_access": {
        "en": "Only members who have this course can review it.",
        "zh-CN": "只有拥有本课程的会员才能评价。",
    },
    "review_invalid_title": {"en": "Review not saved", "zh-CN": "评价未保存"},
    "review_invalid": {
        "en": "Your review was not saved: {reason}",
        "zh-CN": "评价未保存：{reason}",
    },
    "satisfaction_note": {
        "en": "Average course rating from members' reviews.",
        "zh-CN": "会员评价的课程平均评分。",
    },
    "metric_container_hours": {"en": "Container-hours", "zh-CN": "容器小时数"},
    "container_hours_note": {
        "en": "Course servers' running time, sampled every minute.",
        "zh-CN": "课程服务器运行时长，每分钟采样一次。",
    },
    "cost_rate_missing": {
        "en": "rate not set (payments.container_hour_cost)",
        "zh-CN": "未设置费率（payments.container_hour_cost）",
    },
    "quality_note": {
        "en": "Average autograded score of every graded submission, all courses.",
        "zh-CN": "所有课程已评分提交的平均自动评分。",
    },
    "student": {"en": "learner", "zh-CN": "学员"},
    "hours_late": {"en": "hours late", "zh-CN": "逾期小时"},
    "penalty": {"en": "penalty", "zh-CN": "扣分"},
    "none_late": {"en": "Nobody handed in late.", "zh-CN": "没有逾期提交。"},
    "download_grades": {"en": "Download grades (CSV)", "zh-CN": "下载成绩（CSV）"},
    "grade_by_hand": {"en": "Grade by hand (formgrader)", "zh-CN": "人工评分（formgrader）"},
    "average_score": {"en": "Average score", "zh-CN": "平均分"},
    "graded_submissions": {"en": "graded submissions", "zh-CN": "份已评分提交"},
    "no_data_yet": {
        "en": "No data yet: this appears once autograding is running.",
        "zh-CN": "暂无数据：自动评分上线后将在此显示。",
    },
    "no_enrolments": {"en": "No enrolments yet.", "zh-CN": "还没有学员选课。"},
    "admin_title": {"en": "Operator dashboard", "zh-CN": "运营看板"},
    "admin_intro": {
        "en": "Does the community pay for itself? P = R − C, from real data only; what is not "
        "measured yet is shown as missing.",
        "zh-CN": "社区能否自给自足？P = R − C，仅使用真实数据；尚未度量的指标显示为缺失。",
    },
    "metric_members": {"en": "Members N", "zh-CN": "会员数 N"},
    "metric_activity": {
        "en": "Activity A (active in the last 7 days)",
        "zh-CN": "活跃度 A（近 7 天活跃）",
    },
    "metric_revenue": {"en": "Revenue R (paid minus refunds)", "zh-CN": "收入 R（已付款减退款）"},
    "metric_cost": {"en": "Cost C (container-hours × rate)", "zh-CN": "成本 C（容器小时 × 费率）"},
    "metric_profit": {"en": "P = R − C", "zh-CN": "P = R − C"},
    "metric_quality": {"en": "Quality Q (average score)", "zh-CN": "质量 Q（平均分）"},
    "metric_satisfaction": {
        "en": "Satisfaction U (course ratings)",
        "zh-CN": "满意度 U（课程评分）",
    },
    "not_measured": {"en": "not measured yet", "zh-CN": "尚未度量"},
    "missing_grades": {"en": "missing: no grades yet", "zh-CN": "缺失：尚无成绩"},
    "missing_reviews": {"en": "missing: no reviews yet", "zh-CN": "缺失：尚无评价"},
    "missing_cost": {
        "en": "missing: without a cost rate, P cannot be computed",
        "zh-CN": "缺失：未设置成本费率，无法计算 P",
    },
    "activity_unavailable": {
        "en": "unavailable: the hub did not answer",
        "zh-CN": "不可用：Hub 未响应",
    },
    "members_note": {
        "en": "people with access to at least one course now",
        "zh-CN": "当前至少拥有一门课程访问权限的人数",
    },
    "revenue_by_course": {"en": "Revenue by course", "zh-CN": "各课程收入"},
    "members_by_course": {"en": "Members by course", "zh-CN": "各课程会员数"},
    "memberships": {"en": "Memberships", "zh-CN": "会员订阅"},
    "data_table": {"en": "Data as a table", "zh-CN": "数据表"},
    "course": {"en": "Course", "zh-CN": "课程"},
    "value": {"en": "Value", "zh-CN": "数值"},
    "week_of": {"en": "Week of", "zh-CN": "周起始"},
    # member home
    "launch": {"en": "Launch", "zh-CN": "启动"},
    "resume": {"en": "Resume", "zh-CN": "继续"},
    "more_courses": {"en": "Find more courses in the catalog", "zh-CN": "在课程目录中查找更多课程"},
}
MESSAGES.update(JOB_MESSAGES)


def negotiate(accept_language: str | None) -> str:
    """The best of :data:`LANGUAGES` for an ``Accept-Language`` header (``en`` if none fits).

    Any Chinese variant written in simplified script (``zh``, ``zh-CN``, ``zh-SG``,
    ``zh-Hans``) maps to ``zh-CN``; traditional-script variants do not, since the pages are not
    written in traditional characters.
    """
    if not accept_language:
        return LANGUAGES[0]
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag and quality > 0:
            # Earlier entries win ties, as the header lists them in order of preference.
            ranked.append((-quality, position, tag.strip().lower()))
    for _, _, tag in sorted(ranked):
        if tag.startswith("en"):
            return "en"
        if tag in ("zh", "zh-cn", "zh-sg", "zh-hans") or tag.startswith("zh-hans"):
            return "zh-CN"
    return LANGUAGES[0]


def normalize(lang: str | None) -> str | None:
    """A supported language for a ``?lang=`` value or cookie (case-insensitive), else None."""
    if not lang:
        return None
    lowered = lang.strip().lower()
    for candidate in LANGUAGES:
        if candidate.lower() == lowered:
            return candidate
    if lowered in ("zh", "zh-hans"):
        return "zh-CN"
    return None


def choose_language(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    """The page language: explicit choice, then the remembered one, then the browser's."""
    return normalize(query) or normalize(cookie) or negotiate(accept_language)


def translate(lang: str, key: str, **values: object) -> str:
    """The message ``key`` in ``lang`` with ``{placeholders}`` filled in."""
    entry = MESSAGES.get(key)
    if entry is None:
        raise KeyError(f"no message {key!r}")
    text = entry.get(lang) or entry["en"]
    return text.format(**values) if values else text


def translator(lang: str) -> Translator:
    """``_(key, **values)`` for templates and handlers."""

    def _(key: str, **values: object) -> str:
        return translate(lang, key, **values)

    return _
