"""The anonymous views of the public pages, kept rendered, over HTTP through the real stack.

The service renders the anonymous catalog and course pages once per path and language and sends
those bytes again until reviews or announcements change through it (`hub.service.pages.
PublicPages`). These tests prove what that must never break: each language gets its own page,
a signed-in person never gets the anonymous page (nor anyone else theirs), a change made through
the service shows at once, and conditional GETs get a 304 only for the very page they hold.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from hub.reviews import course_reviews, save_review
from hub.store import Database
from tests.browser.test_pages_http import SERVICE, sign_in_to_service, xsrf_of
from tests.harness import Browser, HubProcess, browser

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("report_on_failure")]

COURSE = SERVICE + "courses/python-foundations"
EN = {"Accept-Language": "en"}
ZH = {"Accept-Language": "zh-CN,zh;q=0.9"}


def assert_anonymous(page: httpx.Response) -> None:
    """The page is the anonymous view: sign-in link, nobody's name in the navbar, no Open or Buy,
    no forms, no XSRF token."""
    assert page.status_code == 200
    assert 'id="login"' in page.text and 'id="logout"' not in page.text
    assert "_xsrf" not in page.text and "learnhub-buy" not in page.text
    assert '<span class="me-1">' not in page.text and "learnhub-open" not in page.text
    assert page.headers["Cache-Control"] == "no-cache"
    assert "set-cookie" not in page.headers or "_xsrf" not in page.headers["set-cookie"]


@pytest.fixture
def visitor(docker_hub: HubProcess) -> Iterator[Browser]:
    with browser(docker_hub) as b:
        yield b


@pytest.fixture
def learnhub_db(docker_hub: HubProcess) -> Iterator[Database]:
    """The hub's LearnHub database, opened by this (another) process."""
    db = Database(f"sqlite:///{docker_hub.learnhub_db_path}")
    yield db
    db.dispose()


def test_each_language_has_its_own_page_and_etag(visitor: Browser) -> None:
    for path in (SERVICE, COURSE):
        en = visitor.client.get(path, headers=EN)
        zh = visitor.client.get(path, headers=ZH)
        en_again = visitor.client.get(path, headers=EN)
        for page in (en, zh, en_again):
            assert_anonymous(page)
            assert page.headers["Vary"] == "Accept-Language, Cookie"
        assert '<html lang="en">' in en.text and en.headers["Content-Language"] == "en"
        assert '<html lang="zh-CN">' in zh.text and zh.headers["Content-Language"] == "zh-CN"
        assert "登录后购买" in zh.text and "Sign in to buy" not in zh.text
        assert en_again.content == en.content and en_again.headers["ETag"] == en.headers["ETag"]
        assert zh.headers["ETag"] != en.headers["ETag"]


def test_conditional_get_gets_304_only_for_the_same_page(visitor: Browser) -> None:
    for path in (SERVICE, COURSE):
        en = visitor.client.get(path, headers=EN)
        etag = en.headers["ETag"]
        same = visitor.client.get(path, headers={**EN, "If-None-Match": etag})
        assert same.status_code == 304 and same.content == b""
        # Another language under the same validator is a different page: sent in full.
        other = visitor.client.get(path, headers={**ZH, "If-None-Match": etag})
        assert other.status_code == 200 and '<html lang="zh-CN">' in other.text
        stale = visitor.client.get(path, headers={**EN, "If-None-Match": '"not-this-one"'})
        assert stale.status_code == 200 and stale.content == en.content


def test_lang_choice_is_remembered_even_from_the_kept_page(visitor: Browser) -> None:
    for _ in range(2):  # the first renders and keeps the page, the second is sent from it
        page = visitor.client.get(SERVICE + "?lang=zh-CN", headers=EN)
        assert '<html lang="zh-CN">' in page.text
        assert "learnhub-lang=zh-CN" in page.headers["set-cookie"]
    # The cookie now wins over the browser's English.
    assert '<html lang="zh-CN">' in visitor.client.get(COURSE, headers=EN).text


def test_other_query_arguments_get_a_page_of_their_own(visitor: Browser) -> None:
    plain = visitor.client.get(SERVICE, headers=EN)
    tagged = visitor.client.get(SERVICE + "?ref=newsletter", headers=EN)
    assert_anonymous(tagged)
    # The language links keep the page's own query, so this page differs from the kept one.
    assert "ref=newsletter" in tagged.text and "ref=newsletter" not in plain.text


def test_members_never_get_the_anonymous_page_nor_leave_theirs(docker_hub: HubProcess) -> None:
    with browser(docker_hub) as anonymous:
        public = anonymous.client.get(SERVICE, headers=EN)
        public_course = anonymous.client.get(COURSE, headers=EN)
        assert_anonymous(public)
    with browser(docker_hub) as member:
        sign_in_to_service(member, "demo-learner")  # owns python-foundations in the demo
        for path, kept in ((SERVICE, public), (COURSE, public_course)):
            # Even holding the anonymous page's validator, the member gets their own page.
            page = member.client.get(path, headers={**EN, "If-None-Match": kept.headers["ETag"]})
            assert page.status_code == 200
            assert '<span class="me-1">demo-learner</span>' in page.text
            assert "/hub/spawn/demo-learner/python-foundations" in page.text
            assert page.headers["Cache-Control"] == "private, no-cache"
            assert page.headers["ETag"] != kept.headers["ETag"]
        assert 'id="learnhub-review-form"' in member.client.get(COURSE, headers=EN).text
    with browser(docker_hub) as anonymous:
        for path in (SERVICE, COURSE):
            assert_anonymous(anonymous.client.get(path, headers=EN))


def test_kept_course_page_is_renewed_when_reviews_or_announcements_change(
    docker_hub: HubProcess, visitor: Browser, learnhub_db: Database
) -> None:
    before = visitor.client.get(COURSE, headers=EN)
    assert_anonymous(before)
    # A review written by another process, behind the service's back: the service does not
    # know, so the page it keeps (which is what this proves) is sent unchanged.
    save_review(learnhub_db, "python-foundations", "outside-writer", 3, "Written elsewhere.")
    kept = visitor.client.get(COURSE, headers=EN)
    assert kept.content == before.content and "Written elsewhere." not in kept.text
    with browser(docker_hub) as member:
        sign_in_to_service(member, "demo-learner")
        # Members' pages are never the kept one: the new review is there.
        page = member.client.get(COURSE, headers=EN)
        assert "Written elsewhere." in page.text
        saved = member.client.post(
            COURSE + "/review",
            data={"_xsrf": xsrf_of(page), "rating": "5", "text": "Kept pages, fresh reviews."},
        )
        assert saved.status_code == 200
    # A review through the service renews the kept pages, in every language.
    for headers in (EN, ZH):
        fresh = visitor.client.get(COURSE, headers=headers)
        assert_anonymous(fresh)
        assert "Kept pages, fresh reviews." in fresh.text and "Written elsewhere." in fresh.text
    renewed = visitor.client.get(COURSE, headers=EN)
    assert renewed.headers["ETag"] != before.headers["ETag"]
    assert {r.text for r in course_reviews(learnhub_db, "python-foundations")} >= {
        "Written elsewhere.",
        "Kept pages, fresh reviews.",
    }
    with browser(docker_hub) as instructor:
        sign_in_to_service(instructor, "demo-instructor")
        dashboard = SERVICE + "instructor/python-foundations"
        posted = instructor.client.post(
            dashboard + "/announce",
            data={"_xsrf": xsrf_of(instructor.client.get(dashboard)), "text": "Lab moved to B2."},
        )
        assert posted.status_code == 200
    announced = visitor.client.get(COURSE, headers=EN)
    assert_anonymous(announced)
    assert "Lab moved to B2." in announced.text
    assert announced.headers["ETag"] != renewed.headers["ETag"]
