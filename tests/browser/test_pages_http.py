"""Every LearnHub page over HTTP through the real stack: proxy, hub, OAuth, the service.

The hub runs under the hostile base URL `/@/space%20word/`, so these tests also prove the
service's routes and links survive escaping.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Iterator

import docker
import httpx
import pytest

from harness.docker import held_start
from tests.harness import Browser, HubProcess, browser, wait_for_server

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("report_on_failure")]

SERVICE = "services/learnhub/"
PASSWORD = "learnhub-demo"
COURSES = ("python-foundations", "algorithms-in-python")


def sign_in_to_service(b: Browser, user: str, password: str = PASSWORD) -> None:
    """Log in to the hub, then complete the service's OAuth hand-shake."""
    assert b.login(user, password).status_code == 200
    page = b.client.get(SERVICE + "login", params={"next": b.hub_path()[:-4] + SERVICE})
    assert page.status_code == 200, page.text
    assert 'id="learnhub-catalog"' in page.text
    assert f'<span class="me-1">{user}</span>' in page.text


def left_group(hub: HubProcess, user: str, group: str, timeout: float = 30) -> None:
    """Wait until the access sync has taken ``user`` out of the Hub's ``group`` (a refund's
    revoke reaches the Hub through the service's sync, moments after the webhook)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if user not in hub.api("GET", f"/groups/{group}").json()["users"]:
            return
        time.sleep(0.2)
    raise AssertionError(f"{user} is still in {group} after {timeout} s")


def xsrf_of(page: httpx.Response) -> str:
    match = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    assert match, "no _xsrf field on the page"
    return match.group(1)


def password_fields(page: httpx.Response) -> list[tuple[str, str, str, str]]:
    """(id, label, name, autocomplete) of each password field: the shape of
    hub/templates/site/password-fields.html, which every account form renders."""
    return re.findall(
        r'<label class="form-label" for="([^"]+)">([^<]+)</label>\s*'
        r'(?:<div class="input-group">\s*)?<input id="\1" type="password" name="([^"]+)" '
        r'autocapitalize="off" autocorrect="off" autocomplete="([^"]+)"',
        page.text,
    )


@pytest.fixture
def visitor(docker_hub: HubProcess) -> Iterator[Browser]:
    with browser(docker_hub) as b:
        yield b


def test_anonymous_catalog_lists_both_courses(visitor: Browser) -> None:
    page = visitor.client.get(SERVICE, headers={"Accept-Language": "en"})
    assert page.status_code == 200
    assert '<html lang="en">' in page.text
    for course in COURSES:
        assert f'data-course="{course}"' in page.text
    assert "Algorithms in Python" in page.text and "$69.00" in page.text
    assert "Sign in to buy" in page.text and "learnhub-buy" not in page.text
    # The stylesheet is the hub's own, under the hostile base URL.
    assert 'href="/@/space%20word/hub/static/css/style.min.css"' in page.text
    css = visitor.client.get("hub/static/css/style.min.css")
    assert css.status_code == 200 and "Bootstrap" in css.text[:400]


def test_course_page(visitor: Browser) -> None:
    page = visitor.client.get(SERVICE + "courses/algorithms-in-python")
    assert page.status_code == 200
    assert "Syllabus" in page.text and "What you will build" in page.text
    assert "Problem set 1: Searching, sorting and hashing" in page.text
    assert 'datetime="2027-03-08T23:59:00+00:00"' in page.text
    assert visitor.client.get(SERVICE + "courses/no-such-course").status_code == 404


def test_chinese_from_accept_language_and_toggle_back(visitor: Browser) -> None:
    page = visitor.client.get(SERVICE, headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    assert page.status_code == 200
    assert '<html lang="zh-CN">' in page.text
    assert "课程目录" in page.text and "登录后购买" in page.text
    english = visitor.client.get(SERVICE + "?lang=en", headers={"Accept-Language": "zh-CN"})
    assert '<html lang="en">' in english.text and "Course catalog" in english.text
    # The choice sticks (cookie) even though the browser still prefers Chinese.
    again = visitor.client.get(
        SERVICE + "courses/python-foundations", headers={"Accept-Language": "zh-CN"}
    )
    assert '<html lang="en">' in again.text


def test_checkout_needs_xsrf_then_demo_purchase_pages(docker_hub: HubProcess) -> None:
    with browser(docker_hub) as b:
        b.signup("mary-somerville", "connexion-1834-sciences")
        sign_in_to_service(b, "mary-somerville", "connexion-1834-sciences")
        course_page = b.client.get(SERVICE + "courses/algorithms-in-python")
        assert "learnhub-buy" in course_page.text
        forged = b.client.post(SERVICE + "checkout/algorithms-in-python", follow_redirects=False)
        assert forged.status_code == 403
        # Said in words (the member's language), not a bare "403 Forbidden".
        assert (
            "This form could not be accepted" in forged.text
            and "Nothing was changed" in forged.text
        )
        bad = b.client.post(
            SERVICE + "checkout/algorithms-in-python",
            data={"_xsrf": "not-the-token"},
            follow_redirects=False,
        )
        assert bad.status_code == 403
        created = b.client.post(
            SERVICE + "checkout/algorithms-in-python",
            data={"_xsrf": xsrf_of(course_page)},
            follow_redirects=False,
        )
        assert created.status_code == 303, created.text
        demo = b.client.get(b.absolute(created.headers["Location"]))
        assert "no money moves" in demo.text
        assert "$69.00" in demo.text
        # Only the action that applies: an open checkout can be paid, not refunded.
        assert 'id="learnhub-demo-pay"' in demo.text
        assert 'id="learnhub-demo-refund"' not in demo.text
        cancel = b.client.get(SERVICE + "checkout/cancel")
        assert cancel.status_code == 200 and "Nothing was charged" in cancel.text
        paid = b.client.post(str(demo.url), data={"_xsrf": xsrf_of(demo), "action": "pay"})
        assert paid.status_code == 200, paid.text
        assert 'data-kind="success"' in paid.text
        assert "/@/space%20word/hub/spawn/mary-somerville/algorithms-in-python" in paid.text
        after = b.client.get(str(demo.url))
        assert 'id="learnhub-demo-refund"' in after.text
        assert 'id="learnhub-demo-pay"' not in after.text
        # Buying again is refused with the reason and the way in.
        again = b.client.post(
            SERVICE + "checkout/algorithms-in-python",
            data={"_xsrf": xsrf_of(b.client.get(SERVICE))},
        )
        assert again.status_code == 409
        assert "already have access" in again.text and "learnhub-open" in again.text
        history = b.client.get(SERVICE + "purchases")
        assert history.status_code == 200
        assert 'data-status="active"' in history.text and "Algorithms in Python" in history.text
        catalog = b.client.get(SERVICE)
        assert "/hub/spawn/mary-somerville/algorithms-in-python" in catalog.text
        zh = b.client.get(SERVICE + "purchases?lang=zh-CN")
        assert "购买记录" in zh.text and "有效" in zh.text
        # The language chosen on a service page holds on the Hub's pages (one cookie).
        home = b.client.get("hub/home")
        assert '<html lang="zh-CN">' in home.text and "我的课程" in home.text
        # Refunded: no button is left, and the member home says how to get back in.
        refund_page = b.client.get(str(demo.url))
        refunded = b.client.post(
            str(demo.url), data={"_xsrf": xsrf_of(refund_page), "action": "refund"}
        )
        assert refunded.status_code == 200 and 'data-kind="refunded"' in refunded.text
        done = b.client.get(str(demo.url))
        assert "learnhub-demo-pay" not in done.text and "learnhub-demo-refund" not in done.text
        left_group(docker_hub, "mary-somerville", "course-algorithms-in-python")
        home = b.client.get("hub/home")
        ended = re.search(
            r'<li class="learnhub-ended" data-course="algorithms-in-python">.*?</li>',
            home.text,
            re.S,
        )
        assert ended, home.text
        assert "已退款" in ended.group(0) and "重新购买" in ended.group(0)


def title_and_heading(page: httpx.Response) -> tuple[str, str]:
    """The page's <title> and its <h1>, stripped."""
    title = re.search(r"<title>(.*?)</title>", page.text, re.S)
    heading = re.search(r"<h1[^>]*>(.*?)</h1>", page.text, re.S)
    assert title and heading, page.text
    return title.group(1).strip(), heading.group(1).strip()


def test_the_start_page_names_the_course_by_its_title(
    docker_hub: HubProcess, engine: docker.DockerClient
) -> None:
    """The page shown while a course server starts names the course by its title (course.yaml),
    not its id. (The server started here is the one the dashboards test meters; the failed
    start's page is checked in Chinese in test_front_door_and_the_hubs_pages_in_chinese.)"""
    course, title = "python-foundations", "Python Foundations for Working Programmers"
    with browser(docker_hub) as learner:
        assert learner.login("demo-learner", PASSWORD).status_code == 200
        servers = docker_hub.api("GET", "/users/demo-learner").json()["servers"]
        assert course not in servers, "this test runs before anything starts the server"
        # The spawn page waits a second for the start, then shows the progress page: the start
        # is held (its container paused) so that it takes longer than that on any machine.
        with held_start(engine, docker_hub.prefix, "demo-learner", course) as start:
            starting = learner.client.get(f"hub/spawn/demo-learner/{course}")
            start.wait_held()
            pending = f"/hub/spawn-pending/demo-learner/{course}"
            assert starting.url.path.endswith(pending), starting.url
            assert title_and_heading(starting) == (
                f"Starting {title} · LearnHub",
                f"Starting {title}",
            )
        wait_for_server(docker_hub, "demo-learner", course)


def test_dashboards_are_for_instructors_and_admins(docker_hub: HubProcess) -> None:
    with browser(docker_hub) as b:
        sign_in_to_service(b, "demo-learner")
        assert b.client.get(SERVICE + "instructor/algorithms-in-python").status_code == 403
        assert b.client.get(SERVICE + "admin").status_code == 403
    with browser(docker_hub) as b:
        sign_in_to_service(b, "demo-instructor")
        missing = b.client.get(SERVICE + "instructor/no-such-course")
        assert missing.status_code == 404 and "no-such-course" in missing.text
        page = b.client.get(SERVICE + "instructor/algorithms-in-python")
        assert page.status_code == 200
        assert "<svg" in page.text and "Enrolment over time" in page.text
        # Nothing collected in this hub yet: the grading sections say so, never invent data.
        assert "No submissions collected yet" in page.text
        assert "No data yet" in page.text
        csv_export = b.client.get(SERVICE + "instructor/algorithms-in-python/grades.csv")
        assert csv_export.status_code == 200
        assert csv_export.text.startswith("course,assignment,student,score")
        assert b.client.get(SERVICE + "admin").status_code == 403
    # A running course server is metered in container-hours when the operator looks.
    with browser(docker_hub) as learner:
        assert learner.login("demo-learner", "learnhub-demo").status_code == 200
        if (
            "python-foundations"
            not in docker_hub.api("GET", "/users/demo-learner").json()["servers"]
        ):
            learner.spawn_course("demo-learner", "python-foundations")
        wait_for_server(docker_hub, "demo-learner", "python-foundations")
    with browser(docker_hub) as b:
        sign_in_to_service(b, "demo-admin")
        page = b.client.get(SERVICE + "admin")
        assert page.status_code == 200
        assert "<svg" in page.text
        assert 'data-metric="H"' in page.text
        # No rate configured: cost and P are missing, never guessed.
        assert 'data-metric="C"' in page.text and "rate not set" in page.text
        db = docker_hub.learnhub_db_path
        with sqlite3.connect(db) as conn:
            runs = conn.execute(
                "SELECT course_id FROM server_usage WHERE username = 'demo-learner'"
            ).fetchall()
        assert ("python-foundations",) in runs
        assert "missing: no reviews yet" in page.text
        members = re.search(r'data-metric="N".*?<strong>(\d+)</strong>', page.text, re.S)
        assert members and int(members.group(1)) >= 1  # the demo learner's seeded course
        assert b.client.get(SERVICE + "instructor/python-foundations").status_code == 200


def test_members_review_courses_and_feed_satisfaction(docker_hub: HubProcess) -> None:
    course = SERVICE + "courses/python-foundations"
    review = course + "/review"
    with browser(docker_hub) as b:
        sign_in_to_service(b, "demo-learner")  # owns python-foundations in the demo
        page = b.client.get(course)
        assert 'id="learnhub-review-form"' in page.text
        token = xsrf_of(page)
        assert (
            b.client.post(review, data={"rating": "5", "text": "Clear, deep."}).status_code == 403
        )
        bad = b.client.post(review, data={"_xsrf": token, "rating": "9", "text": "!"})
        assert bad.status_code == 400 and "whole number from 1 to 5" in bad.text
        saved = b.client.post(review, data={"_xsrf": token, "rating": "5", "text": "Clear, deep."})
        assert saved.status_code == 200 and saved.url.path.endswith("/courses/python-foundations")
        assert 'data-user="demo-learner"' in saved.text and "Clear, deep." in saved.text
        assert "<strong>5.0</strong> / 5 (1 rating)" in saved.text
        # Writing again replaces the member's review instead of adding one.
        again = b.client.post(review, data={"_xsrf": token, "rating": "4", "text": "Good."})
        assert "<strong>4.0</strong> / 5 (1 rating)" in again.text
    with browser(docker_hub) as b:
        b.signup("no-access-reviewer", "reviewing-without-buying")
        sign_in_to_service(b, "no-access-reviewer", "reviewing-without-buying")
        page = b.client.get(course)
        assert 'id="learnhub-review-form"' not in page.text
        refused = b.client.post(
            review, data={"_xsrf": xsrf_of(b.client.get(SERVICE)), "rating": "1"}
        )
        assert refused.status_code == 403 and "Only members who have this course" in refused.text
    with browser(docker_hub) as b:
        sign_in_to_service(b, "demo-admin")
        admin = b.client.get(SERVICE + "admin").text
        assert re.search(r'data-metric="U".*?4\.0 / 5 \(1\)', admin, re.S)


def test_instructors_post_announcements_members_see_them(docker_hub: HubProcess) -> None:
    dashboard = SERVICE + "instructor/python-foundations"
    with browser(docker_hub) as b:
        sign_in_to_service(b, "demo-learner")
        token = xsrf_of(b.client.get(SERVICE))
        refused = b.client.post(dashboard + "/announce", data={"_xsrf": token, "text": "hi"})
        assert refused.status_code == 403
    with browser(docker_hub) as b:
        sign_in_to_service(b, "demo-instructor")
        page = b.client.get(dashboard)
        token = xsrf_of(page)
        empty = b.client.post(dashboard + "/announce", data={"_xsrf": token, "text": "  "})
        assert empty.status_code == 400 and "needs some text" in empty.text
        posted = b.client.post(
            dashboard + "/announce", data={"_xsrf": token, "text": "Office hours Friday 5pm."}
        )
        assert posted.status_code == 200 and "Office hours Friday 5pm." in posted.text
    with browser(docker_hub) as b:
        sign_in_to_service(b, "demo-learner")
        assert (
            "Office hours Friday 5pm." in b.client.get(SERVICE + "courses/python-foundations").text
        )
        assert "Office hours Friday 5pm." in b.client.get("hub/home").text


#: An announcement with Markdown, a code block, and raw HTML that must never reach a page.
MARKDOWN_NOTICE = (
    "Read **the notes** before Friday.\n\n"
    '```python\nprint("<script>alert(1)</script>")\n```\n\n'
    "<script>alert('announcement')</script>\n\n"
    "[a link](javascript:alert(2))"
)


def test_home_shows_announcements_rendered_and_sanitized(docker_hub: HubProcess) -> None:
    """My courses shows an announcement as the course page does: its Markdown rendered (bold,
    a highlighted code block), never as source, and no script an instructor typed."""
    dashboard = SERVICE + "instructor/python-foundations"
    with browser(docker_hub) as b:
        sign_in_to_service(b, "demo-instructor")
        token = xsrf_of(b.client.get(dashboard))
        posted = b.client.post(
            dashboard + "/announce", data={"_xsrf": token, "text": MARKDOWN_NOTICE}
        )
        assert posted.status_code == 200, posted.text
    with browser(docker_hub) as b:
        sign_in_to_service(b, "demo-learner")
        home = b.client.get("hub/home")
        assert home.status_code == 200
        match = re.search(
            r'<div class="small mb-0 learnhub-announcement">(.*?)</div></div>', home.text, re.S
        )
        assert match, home.text
        shown = match.group(1)
        assert "<strong>the notes</strong>" in shown and "**the notes**" not in shown
        assert '<pre class="learnhub-code">' in shown and 'class="tok-' in shown  # Pygments
        assert "&lt;script&gt;alert(1)" in shown  # the code block's text, escaped
        assert "<script" not in shown and 'href="javascript:' not in shown
        assert "static/highlight.css" in home.text


def test_course_questions_and_answers(docker_hub: HubProcess) -> None:
    qa_page = SERVICE + "courses/python-foundations/questions"
    with browser(docker_hub) as outsider:
        outsider.signup("qa-outsider", "not-a-member-of-this")
        sign_in_to_service(outsider, "qa-outsider", "not-a-member-of-this")
        refused = outsider.client.get(qa_page)
        assert refused.status_code == 403 and "for the members who have it" in refused.text
    with browser(docker_hub) as asker:
        sign_in_to_service(asker, "demo-learner")
        missing = asker.client.get(SERVICE + "courses/no-such-course/questions")
        assert missing.status_code == 404 and "no-such-course" in missing.text
        page = asker.client.get(qa_page)
        token = xsrf_of(page)
        assert asker.client.post(qa_page, data={"title": "x", "body": "y"}).status_code == 403
        empty = asker.client.post(qa_page, data={"_xsrf": token, "title": " ", "body": "y"})
        assert empty.status_code == 400 and "title is empty" in empty.text
        asked = asker.client.post(
            qa_page,
            data={"_xsrf": token, "title": "Why is __eq__ not enough?", "body": "Sets break."},
        )
        assert asked.status_code == 200 and "Why is __eq__ not enough?" in asked.text
        question_url = str(asked.url)
    with browser(docker_hub) as teacher:
        sign_in_to_service(teacher, "demo-instructor")
        page = teacher.client.get(question_url)
        answered = teacher.client.post(
            question_url, data={"_xsrf": xsrf_of(page), "body": "Define `__hash__` as well."}
        )
        assert "Define <code>__hash__</code> as well." in answered.text  # Markdown
        assert '<h2 class="h5">1 answer</h2>' in answered.text  # not "1 answers"
        answer_id = re.search(r'data-answer="(\d+)"', answered.text).group(1)  # type: ignore[union-attr]
        # An instructor cannot upvote their own answer.
        own = teacher.client.post(
            SERVICE + f"courses/python-foundations/answers/{answer_id}/vote",
            data={"_xsrf": xsrf_of(answered)},
        )
        assert own.status_code == 400
    with browser(docker_hub) as asker:
        sign_in_to_service(asker, "demo-learner")
        page = asker.client.get(question_url)
        token = xsrf_of(page)
        action = SERVICE + f"courses/python-foundations/answers/{answer_id}/"
        for _ in range(2):  # voting twice counts once
            asker.client.post(action + "vote", data={"_xsrf": token})
        accepted = asker.client.post(action + "accept", data={"_xsrf": token})
        assert accepted.status_code == 200
        assert f'data-answer="{answer_id}" data-votes="1" data-accepted="true"' in accepted.text
        listing = asker.client.get(qa_page).text
        assert "Why is __eq__ not enough?" in listing and "accepted" in listing
        # Editing one's own question: a forged form (no XSRF token) is refused, a real one saved.
        edit = question_url + "/edit"
        form = asker.client.get(edit)
        assert form.status_code == 200 and "Sets break.</textarea>" in form.text
        changed = {"title": "Why is __eq__ not enough for sets?", "body": "Sets *break*."}
        assert asker.client.post(edit, data=changed).status_code == 403
        saved = asker.client.post(edit, data={"_xsrf": xsrf_of(form), **changed})
        assert saved.status_code == 200 and "<em>break</em>" in saved.text
        assert "learnhub-edited" in saved.text
    with browser(docker_hub) as teacher:  # an instructor is not the author
        sign_in_to_service(teacher, "demo-instructor")
        token = xsrf_of(teacher.client.get(question_url))
        other = teacher.client.post(question_url + "/edit", data={"_xsrf": token, "body": "x"})
        assert other.status_code == 403 and "Only its author" in other.text


def test_front_door_and_the_hubs_pages_in_chinese(docker_hub: HubProcess) -> None:
    zh = {"Accept-Language": "zh-CN,zh;q=0.9"}
    with browser(docker_hub) as visitor:
        # The site's root shows a visitor the catalog, not JupyterHub's login page.
        root = visitor.client.get("", headers=zh)
        assert root.url.path.endswith("/services/learnhub/"), root.url
        assert 'id="learnhub-catalog"' in root.text
        assert "跳到正文" in root.text and "Skip to content" not in root.text
        login = visitor.client.get("hub/login", headers=zh)
        assert '<html lang="zh-CN">' in login.text
        assert re.search(r"<title>\s*登录 LearnHub\s*</title>", login.text)
        assert "JupyterHub" not in re.search(r"<title>.*?</title>", login.text, re.S).group(0)  # type: ignore[union-attr]
        assert 'id="learnhub-nav-catalog"' in login.text and "课程目录" in login.text
        assert "创建账号" in login.text
        assert password_fields(login) == [
            ("password_input", "密码", "password", "current-password")
        ]
        signup = visitor.client.get("hub/signup", headers=zh)
        assert "创建你的 LearnHub 账号" in signup.text
        assert password_fields(signup) == [
            ("password_input", "密码", "signup_password", "new-password"),
            (
                "password_confirmation_input",
                "确认密码",
                "signup_password_confirmation",
                "new-password",
            ),
        ]
        # A course refused (never bought): the 403 says why and what to do, in Chinese.
        visitor.signup("lise-meitner", "fission-1938-physics")
        refused = visitor.client.get("hub/spawn/lise-meitner/algorithms-in-python", headers=zh)
        assert refused.status_code == 403
        assert '<html lang="zh-CN">' in refused.text and "403：无权访问" in refused.text  # noqa: RUF001
        main = refused.text[refused.text.find("<main") :]
        assert "你没有课程“Algorithms in Python”的访问权限" in main, main
        assert "重新购买" in refused.text and "前往课程目录" in refused.text
        assert "You can try restarting" not in refused.text
        # Back to the course server's page: the failed start, named by the course's title.
        failed = visitor.client.get(
            "hub/spawn-pending/lise-meitner/algorithms-in-python", headers=zh
        )
        assert failed.status_code == 403, failed.text
        assert title_and_heading(failed) == (
            "课程“Algorithms in Python”的服务器未能启动 · LearnHub",
            "课程“Algorithms in Python”的服务器未能启动",
        )
    with browser(docker_hub) as member:
        sign_in_to_service(member, "demo-learner")
        # A member at the root gets their courses.
        home = member.client.get("", headers=zh)
        assert home.url.path.endswith("/hub/home"), home.url
        assert "我的课程" in home.text and "退出登录" in home.text and "Logout" not in home.text
        row = re.search(
            r'<tr class="learnhub-course" data-course="python-foundations">.*?</tr>',
            home.text,
            re.S,
        )
        assert row, home.text
        ids = re.findall(r'data-assignment="([^"]+)"', row.group(0))
        assert ids and len(ids) == len(set(ids)), ids  # each assignment once
        # The toggle on a Hub page sets the cookie the service's pages follow too.
        english = member.client.get("hub/home?lang=en", headers=zh)
        assert '<html lang="en">' in english.text and "My courses" in english.text
        catalog = member.client.get(SERVICE, headers=zh)
        assert '<html lang="en">' in catalog.text and "Sign out" in catalog.text


def test_members_navigation_leads_to_their_mail_settings(docker_hub: HubProcess) -> None:
    """Every page's navigation, the Hub's and the service's, has the member's mail settings
    (notices, their language, the address); a visitor's has none."""
    email_link = re.compile(
        r'<a class="nav-link" id="learnhub-nav-email" href="([^"]+)">([^<]+)</a>'
    )
    password_link = re.compile(r'<a class="nav-link" id="learnhub-nav-password" href="([^"]+)">')
    with browser(docker_hub) as visitor:
        for page in (SERVICE, "hub/login"):
            text = visitor.client.get(page).text
            assert not email_link.search(text) and not password_link.search(text), page
    with browser(docker_hub) as member:
        sign_in_to_service(member, "demo-learner")
        for page in ("hub/home", SERVICE, SERVICE + "purchases"):
            text = member.client.get(page).text
            found = email_link.search(text)
            assert found, page
            assert found.group(1) == "/@/space%20word/services/learnhub/email", found.group(1)
            assert found.group(2) == "Mail settings"
            # Beside it, the Hub's change-password page (this hub's accounts are native).
            password = password_link.search(text)
            assert password and password.group(1) == member.hub_path() + "change-password"
        chinese = member.client.get("hub/home", headers={"Accept-Language": "zh-CN"})
        found = email_link.search(chinese.text)
        assert found and found.group(2) == "邮件设置"
        settings = member.client.get(member.absolute(found.group(1)))
        assert settings.status_code == 200 and 'id="learnhub-email-settings"' in settings.text


def test_sign_up_refusals_and_hub_errors_in_chinese(docker_hub: HubProcess) -> None:
    """Sign-up's refusals and JupyterHub's own errors (which carry no message key) are in the
    page's language; JupyterHub's English detail is kept, marked as English."""
    zh = {"Accept-Language": "zh-CN"}
    with browser(docker_hub) as visitor:
        form = visitor.client.get("hub/signup", headers=zh)
        refusals = {
            "ada lovelace": "用户名包含空白字符",
            "ada-": "用户名须以字母开头",
            "dem0-learner": "与已有的用户名 demo-learner 太相似",
        }
        for name, says in refusals.items():
            page = visitor.client.post(
                "hub/signup",
                headers=zh,
                data={
                    "_xsrf": xsrf_of(form),
                    "username": name,
                    "signup_password": "a-long-enough-password",
                    "signup_password_confirmation": "a-long-enough-password",
                },
            )
            assert says in page.text, page.text
        mismatch = visitor.client.post(
            "hub/signup",
            headers=zh,
            data={
                "_xsrf": xsrf_of(form),
                "username": "emmy-noether",
                "signup_password": "a-long-enough-password",
                "signup_password_confirmation": "another-long-password",
            },
        )
        assert "两次输入的密码不一致" in mismatch.text
        # An error of JupyterHub's own, with no LearnHub key (a malformed spawn option).
        visitor.signup("grace-hopper", "cobol-1959-compiler")
        odd = visitor.client.get("hub/spawn/grace-hopper/python-foundations?opt-=1", headers=zh)
        assert odd.status_code == 422, odd.text
        main = odd.text.split("<main", 1)[1]
        assert '<html lang="zh-CN">' in odd.text and "422：错误" in main  # noqa: RUF001
        assert "处理这个请求时出错了" in main and "Unprocessable" not in main
        # JupyterHub's words stay, for whoever needs them, marked as English.
        assert '<p lang="en">Invalid user-option name opt-</p>' in main, main


def test_members_change_their_password_in_their_language(docker_hub: HubProcess) -> None:
    """`/hub/change-password` says every outcome in the page's language, changes nothing on a
    wrong current password or a mismatch, and the new password is the one that signs in."""
    zh = {"Accept-Language": "zh-CN"}
    old, new = "first-long-passphrase", "second-long-passphrase"
    password_link = re.compile(
        r'<a class="nav-link" id="learnhub-nav-password" href="([^"]+)">([^<]+)</a>'
    )
    with browser(docker_hub) as member:
        member.signup("sophie-germain", old)
        # My courses links the form, in the page's language (native accounts have a password).
        found = password_link.search(member.client.get("hub/home", headers=zh).text)
        assert found and found.group(2) == "修改密码", found
        assert found.group(1) == member.hub_path() + "change-password", found.group(1)
        form = member.client.get(member.absolute(found.group(1)), headers=zh)
        assert form.status_code == 200, form.text
        assert '<html lang="zh-CN">' in form.text and "修改密码" in form.text
        assert "Change password for" not in form.text  # upstream's English page
        # The current password, then the new one twice: the fields every account form shares.
        assert password_fields(form) == [
            ("old_password_input", "当前密码", "old_password", "current-password"),
            ("password_input", "新密码", "new_password", "new-password"),
            (
                "password_confirmation_input",
                "确认密码",
                "new_password_confirmation",
                "new-password",
            ),
        ]
        # LearnHub's own icon, on the Hub's pages and the service's, not JupyterHub's favicon.
        icon = f'<link rel="icon" href="{member.hub_path()}logo" type="image/svg+xml">'
        assert icon in form.text and icon in member.client.get(SERVICE).text
        logo = member.client.get("hub/logo")
        assert logo.headers["content-type"].startswith("image/svg+xml"), logo.headers
        assert b"favicon" not in form.content

        def change(current: str, typed: str, again: str, **headers: str) -> httpx.Response:
            data = {"old_password": current, "new_password": typed}
            data |= {"new_password_confirmation": again, "_xsrf": xsrf_of(form)}
            return member.client.post("hub/change-password", headers=zh, data=data)

        assert "当前密码不正确" in change("not-my-password", new, new).text
        assert "两次输入的密码不一致" in change(old, new, new + "x").text
        assert "最多 72 字节" in change(old, "short", "short").text  # too weak, in Chinese
        assert "字节" in change(old, "x" * 80, "x" * 80).text  # bcrypt's limit, not a 500
        forged = member.client.post(
            "hub/change-password", data={"old_password": old, "new_password": new}
        )
        assert forged.status_code == 403
        assert member.login("sophie-germain", old).status_code == 200  # nothing changed yet
        form = member.client.get("hub/change-password", headers=zh)
        done = change(old, new, new)
        assert 'id="learnhub-change-password-result" class="alert alert-success"' in done.text
        assert "密码已修改" in done.text
    with browser(docker_hub) as again:
        again.login("sophie-germain", old)
        assert again.client.get("hub/home").url.path.endswith("/hub/login")
        assert again.login("sophie-germain", new).status_code == 200
        assert "sophie-germain" in again.client.get("hub/home").text


def test_robots_and_sitemap_at_the_site_root_through_the_proxy(visitor: Browser) -> None:
    """The proxy's site-root routes (kept by the Hub) reach the service. (The free lesson,
    which the sitemap lists, is opened anonymously in the Chromium walk of
    tests/browser/test_journey_chromium.py; rendering it here too would cost a second render.)"""
    public = visitor.hub.url  # this hub's public URL (its base URL is /@/space%20word/)
    robots = visitor.client.get("robots.txt")
    assert robots.status_code == 200, robots.text
    assert f"Sitemap: {public}sitemap.xml" in robots.text
    assert "Disallow: /@/space%20word/hub/" in robots.text
    sitemap = visitor.client.get("sitemap.xml")
    assert sitemap.status_code == 200
    assert f"<loc>{public}services/learnhub/courses/python-foundations/preview</loc>" in (
        sitemap.text
    )
