"""The member journey in real headless Chromium against a real hub, proxy, service and Docker.

A visitor sees the catalog, signs up, buys a course in the demo checkout, comes back to the
success page, launches the course from the member home and sees its notebooks in JupyterLab.
The grading part of the journey (fetch, submit, collect, autograde, feedback) belongs to the
grader integration and is added as further steps of :func:`test_member_journey` then.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import docker
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, ViewportSize, expect

from harness.browser import DESKTOP, PHONE, serious_violations
from harness.docker import held_start
from tests.browser.conftest import Shots, new_context
from tests.browser.page_checks import PageChecker, course_texts
from tests.harness import HubProcess, run_learnhub

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("report_on_failure")]

COURSE = "algorithms-in-python"
NOTEBOOK = "01-complexity-and-searching.ipynb"
ASSIGNMENT = "ps1-search-sort"
PASSWORD = "learnhub-demo"


def service_url(hub: HubProcess, path: str = "") -> str:
    """Absolute URL of a LearnHub service page."""
    return f"{hub.url}services/learnhub/{path}"


def sign_up(page: Page, hub: HubProcess, username: str, password: str) -> None:
    """Create an account on the hub's sign-up page (which signs the new member in)."""
    page.goto(f"{hub.url}hub/signup")
    fill_sign_up(page, username, password)
    expect(page.locator("#learnhub-home")).to_be_visible()


def fill_sign_up(page: Page, username: str, password: str) -> None:
    """Fill in and send the sign-up form that ``page`` shows."""
    page.fill("#username_input", username)
    if page.locator("#email_input").count():  # only when the hub asks for e-mail addresses
        page.fill("#email_input", f"{username}@example.org")
    page.fill("#password_input", password)
    page.fill("#password_confirmation_input", password)
    page.click("#signup_submit")


def log_in(page: Page, username: str, password: str) -> None:
    """Fill in the hub's login form that ``page`` shows."""
    page.fill("#username_input", username)
    page.fill("#password_input", password)
    page.click("#login_submit")


def sign_in_to_service(page: Page, hub: HubProcess, username: str, password: str) -> None:
    """Sign in through the catalog's Sign in button (hub login, then OAuth back)."""
    page.goto(service_url(hub))
    page.click("#login")
    log_in(page, username, password)
    expect(page.locator("#learnhub-catalog")).to_be_visible()


def read_hub_token_page(page: Page, hub: HubProcess) -> str:
    """What a script on ``page`` gets when it fetches the Hub's `/hub/token` with the
    visitor's cookies: `read <n>` (it could take over the account) or `blocked <error>`."""
    result = page.evaluate(
        """async (url) => {
            try {
                const response = await fetch(url, {credentials: "include"});
                const text = await response.text();
                return `read ${response.status} ${text.length}`;
            } catch (error) {
                return `blocked ${error}`;
            }
        }""",
        f"{hub.url}hub/token",
    )
    return str(result)


def open_nav_link(page: Page, selector: str) -> None:
    """Follow a navigation link as a person would: at phone width the links are folded
    behind the Menu button, which is pressed first."""
    link = page.locator(selector)
    if not link.is_visible():
        page.click("#learnhub-nav-toggler")
    link.click()


def visit_and_buy(
    page: Page, hub: HubProcess, checker: PageChecker, username: str, password: str
) -> None:
    """From the site's root (no typed path) to a paid course on My courses, in the context's
    language: catalog, course page, "Sign in to buy", "Create an account", the demo checkout
    (genuinely signed Stripe-format events into the real webhook), the success page, then
    My courses through the navigation. Each page is checked by ``checker``."""
    checker.allow(username, f"{username}@example.org")
    # 1. A visitor opens the site's root and sees what is for sale.
    page.goto(hub.url)
    expect(page.locator(f'article[data-course="{COURSE}"]')).to_be_visible()
    expect(page.locator('article[data-course="python-foundations"]')).to_be_visible()
    checker.check(page, "catalog")
    # 2. The course's page, then "Sign in to buy" and "Create an account": the new member is
    # signed in and back on the course page, without logging in again or looking for it.
    page.locator(f"#title-{COURSE} a").click()
    expect(page.locator("#learnhub-course")).to_be_visible()
    checker.check(page, "course")
    page.locator(".learnhub-signin").first.click()
    expect(page.locator("#login_submit")).to_be_visible()
    checker.check(page, "sign-in")
    page.click("#learnhub-signup-link")
    expect(page.locator("#signup_submit")).to_be_visible()
    checker.check(page, "sign-up")
    fill_sign_up(page, username, password)
    expect(page.locator("#learnhub-course")).to_be_visible()
    assert urlparse(page.url).path.endswith(f"/services/learnhub/courses/{COURSE}"), page.url
    expect(page.locator(".learnhub-buy")).to_be_visible()
    checker.check(page, "course-signed-in")
    # 3. Buy in the demo checkout, at the course's price ($69.00, US$69.00 in Chinese).
    page.locator(".learnhub-buy").click()
    expect(page.locator("#learnhub-demo-checkout")).to_contain_text("$69.00")
    checker.check(page, "demo-checkout")
    page.click("#learnhub-demo-pay")
    # 4. Back on the success page, with the way into the course.
    message = page.locator("#learnhub-message")
    expect(message).to_have_attribute("data-kind", "success")
    expect(message).to_contain_text("Algorithms in Python")
    checker.check(page, "success")
    # 5. My courses, through the navigation, lists the course with Launch.
    open_nav_link(page, "#learnhub-nav-home")
    row = page.locator(f'tr.learnhub-course[data-course="{COURSE}"]')
    expect(row.locator(".learnhub-launch")).to_be_visible()
    checker.check(page, "my-courses")


def launch_course(
    page: Page, checker: PageChecker, hub: HubProcess, engine: docker.DockerClient, user: str
) -> None:
    """Press Launch on My courses and check the spawn page while the server starts.

    The page follows the start through JupyterHub's progress stream and reloads into the
    server once it says ready, which could happen before the checks finish. So the stream's
    real events (from the real spawn) reach the page with its "ready" flag taken out and a
    long reconnect delay: the page shows every message, stays, and the checks run; then the
    page is reloaded, and the Hub sends the now-running server on. The start itself is held
    until the progress page is up (:func:`harness.docker.held_start`): a server that answers
    within the second JupyterHub's spawn page waits sends the browser straight to JupyterLab.
    """
    progress = re.compile(r"/hub/api/users/[^/]+/servers/[^/]+/progress")

    def hold_ready(route: Route) -> None:
        response = route.fetch(timeout=180_000)  # the whole stream, up to "ready"
        body = "retry: 3600000\n\n" + response.text().replace('"ready": true', '"ready": false')
        route.fulfill(response=response, body=body)

    page.route(progress, hold_ready, times=1)
    with held_start(engine, hub.prefix, user, COURSE) as start:
        page.locator(f'tr.learnhub-course[data-course="{COURSE}"] .learnhub-launch').click()
        page.wait_for_url(re.compile(r"/hub/spawn-pending/"), wait_until="commit")
        start.wait_held()
    # Every event of the real start, the last one saying the server is ready, with its link.
    expect(page.locator("#progress-message a")).to_be_visible(timeout=180_000)
    expect(page.locator("#progress-bar")).to_have_attribute("aria-valuenow", "100")
    checker.check(page, "spawn-pending")
    page.reload()
    expect(page).to_have_url(re.compile(r"/user/[^/]+/algorithms-in-python/lab"), timeout=180_000)


def test_member_journey(
    docker_hub: HubProcess, engine: docker.DockerClient, chromium: Browser, shots: Shots
) -> None:
    """The member journey in English at desktop width, through JupyterLab and grading."""
    context = new_context(chromium)
    page = context.new_page()
    checker = PageChecker("en", DESKTOP, course_texts(Path(docker_hub.settings["courses_dir"])))
    visit_and_buy(page, docker_hub, checker, "katherine-johnson", "trajectory-1962-orbit")
    row = page.locator(f'tr.learnhub-course[data-course="{COURSE}"]')
    expect(row.locator(".learnhub-deadlines")).to_contain_text("Problem set 1")
    expect(page.locator("#learnhub-catalog-link")).to_be_visible()
    shots.publish(shots.take(page, "home"), "home.png")

    # The instructor releases the first problem set (the CLI, as an operator would).
    released = run_learnhub(docker_hub, "grader", "release", COURSE, ASSIGNMENT)
    assert released.returncode == 0, released.stderr

    # 6. Launch: the hub starts the container and JupyterLab shows the course notebooks, on the
    # learner's own origin.
    launch_course(page, checker, docker_hub, engine, "katherine-johnson")
    listing = page.locator(".jp-DirListing-itemText", has_text=NOTEBOOK)
    expect(listing).to_be_visible(timeout=180_000)
    port = urlparse(docker_hub.url).port
    assert page.url.startswith(f"http://katherine-johnson.localhost:{port}/")
    assert re.search(r"/user/katherine-johnson/algorithms-in-python/lab", page.url)
    shots.take(page, "jupyterlab")
    # Any script on the learner's server runs on that origin: it cannot read the Hub's token
    # page as whoever opened it (same-origin policy; the Hub sends no CORS headers).
    assert read_hub_token_page(page, docker_hub).startswith("blocked")

    # 7. Back home, the running course offers Resume.
    page.goto(f"{docker_hub.url}hub/home")
    expect(row.locator(".learnhub-resume")).to_be_visible()
    shots.take(page, "home-running")

    # 8. In JupyterLab's Assignments tab the learner fetches the problem set and submits it.
    row.locator(".learnhub-resume").click()
    expect(page.locator(".jp-DirListing-itemText", has_text=NOTEBOOK)).to_be_visible(
        timeout=120_000
    )
    page.get_by_text("Nbgrader", exact=True).click()
    page.get_by_text("Assignment List", exact=True).click()
    released_list = page.locator("#released_assignments_list")
    expect(released_list).to_contain_text(ASSIGNMENT, timeout=60_000)
    released_list.get_by_role("button", name="Fetch").click()
    fetched_list = page.locator("#fetched_assignments_list")
    expect(fetched_list).to_contain_text(ASSIGNMENT, timeout=60_000)
    shots.take(page, "assignment-fetched")
    fetched_list.get_by_role("button", name="Submit").click()
    submitted_list = page.locator("#submitted_assignments_list")
    expect(submitted_list).to_contain_text(ASSIGNMENT, timeout=60_000)
    shots.take(page, "assignment-submitted")

    # 9. The instructor collects, autogrades in the sandbox and releases feedback.
    for action in ("collect", "autograde", "feedback"):
        result = run_learnhub(docker_hub, "grader", action, COURSE, ASSIGNMENT)
        assert result.returncode == 0, result.stderr
        if action == "autograde":
            assert "katherine-johnson" in result.stdout and "0/10" in result.stdout

    # 10. The learner fetches the feedback and reads the score (untouched work: 0 of 10).
    page.reload()
    page.get_by_text("Nbgrader", exact=True).click()
    page.get_by_text("Assignment List", exact=True).click()
    submitted_list = page.locator("#submitted_assignments_list")
    submitted_list.get_by_role("button", name="Fetch Feedback").click()
    expect(submitted_list.get_by_text("view feedback")).to_be_visible(timeout=60_000)
    shots.take(page, "feedback-fetched")
    server = page.url.split("/lab")[0] + "/"
    # Asked from the page, as JupyterLab does (Chromium resolves `*.localhost`; Playwright's
    # own request client, in Node, does not).
    folder = page.evaluate(
        """async (url) => {
            const xsrf = document.cookie.match(/(?:^|; )_xsrf=([^;]*)/)[1];
            return (await fetch(url, {headers: {"X-XSRFToken": xsrf}})).json();
        }""",
        f"{server}api/contents/{ASSIGNMENT}/feedback",
    )
    (stamp,) = [item["name"] for item in folder["content"]]
    page.goto(f"{server}files/{ASSIGNMENT}/feedback/{stamp}/{ASSIGNMENT}.html")
    expect(page.get_by_text("Score: 0.0 / 10.0").first).to_be_visible()
    assert "BEGIN HIDDEN TESTS" not in page.content()
    shots.take(page, "feedback")

    # 11. The rest of the site, as in every language.
    page.goto(f"{docker_hub.url}hub/home")
    community_and_sign_out(page, checker)
    context.close()
    checker.assert_clean()


def community_and_sign_out(page: Page, checker: PageChecker) -> None:
    """From My courses (the course running) through the site's member pages, following links
    only: the course page with its assignments, the course's Q&A (a question with Markdown and
    a code block), the mail settings, then Sign out. Each page is checked by ``checker``."""
    # Members' own words may stay as written: both journeys' members and their question (the
    # module's hub is shared, so one journey's Q&A page lists the other's post).
    title, body = QUESTION
    checker.allow(*MEMBERS, title, *body.splitlines())
    expect(page.locator(".learnhub-resume")).to_be_visible()
    checker.check(page, "my-courses-running")
    open_nav_link(page, "#learnhub-nav-catalog")
    page.locator(f"#title-{COURSE} a").click()
    expect(page.locator("#assignments-h")).to_be_visible()
    expect(page.locator(".learnhub-open")).to_be_visible()
    checker.check(page, "course-assignments")
    page.click("#learnhub-qa-link")
    expect(page.locator("#learnhub-ask-form")).to_be_visible()
    checker.check(page, "questions")
    page.fill("#q-title", title)
    page.fill("#q-body", body)
    page.locator("#learnhub-ask-form button[type=submit]").click()
    expect(page.locator("#learnhub-question .learnhub-post strong")).to_have_text("bisect_left")
    checker.check(page, "question")
    open_nav_link(page, "#learnhub-nav-email")
    expect(page.locator("#learnhub-email-settings")).to_be_visible()
    checker.check(page, "mail-settings")
    open_nav_link(page, "#logout")
    expect(page.locator("#login_submit")).to_be_visible()
    checker.check(page, "signed-out")


#: The journeys' members (the English one's, the Chinese one's).
MEMBERS = ("katherine-johnson", "tu-youyou")
#: A member's question (their words may stay in Latin letters on a Chinese page).
QUESTION = (
    "Why is binary_search off by one?",
    "Compared with **bisect_left**, mine misses the last item:\n\n"
    "```python\nwhile lo < hi - 1:\n    mid = (lo + hi) // 2\n```\n",
)


def test_member_journey_in_chinese(
    docker_hub: HubProcess, engine: docker.DockerClient, chromium: Browser, shots: Shots
) -> None:
    """The member journey in Simplified Chinese on a phone, from the site's root with no typed
    address, every page also checked at desktop width: every visible text translated, and no
    serious accessibility violation; JupyterLab opens with its Chinese language pack."""
    context = new_context(chromium, locale="zh-CN", viewport=PHONE)
    page = context.new_page()
    checker = PageChecker("zh-CN", PHONE, course_texts(Path(docker_hub.settings["courses_dir"])))
    try:
        visit_and_buy(page, docker_hub, checker, "tu-youyou", "artemisinin-1972-qinghao")
        shots.take(page, "my-courses")
        launch_course(page, checker, docker_hub, engine, "tu-youyou")
        # JupyterLab opens in Chinese: the server was started from a Chinese page, so its
        # language pack is chosen (hub/spawner.py lab_locale, learnhub-start). Its strings are
        # JupyterLab's own catalog, not ours, so the menus are checked, not every text.
        menu = page.locator("#jp-MainMenu .lm-MenuBar-itemLabel")
        expect(menu.first).to_have_text("文件", timeout=180_000)
        expect(menu).to_contain_text(["文件", "编辑", "查看", "帮助"])
        expect(page.locator(".jp-DirListing-itemText").first).to_be_visible(timeout=180_000)
        shots.take(page, "jupyterlab-zh")
        page.goto(f"{docker_hub.url}hub/home")
        community_and_sign_out(page, checker)
        shots.take(page, "signed-out")
    finally:
        context.close()
        print("\n".join(checker.problems))  # also when a step failed before the end
    checker.assert_clean()


def test_instructor_dashboard(
    docker_hub: HubProcess, context: BrowserContext, shots: Shots
) -> None:
    page = context.new_page()
    sign_in_to_service(page, docker_hub, "demo-instructor", PASSWORD)
    page.goto(service_url(docker_hub, f"instructor/{COURSE}"))
    expect(page.locator("#chart-enrolment svg, #chart-status svg").first).to_be_visible()
    # Grading sections and the CSV export (their numbers are checked in
    # tests/test_assignments_docker.py, where the grades are known).
    expect(page.locator("#learnhub-submissions")).to_be_visible()
    expect(page.locator("#learnhub-scores")).to_be_visible()
    expect(page.locator("#learnhub-grades-csv")).to_be_visible()
    expect(page.locator("#learnhub-formgrader")).to_have_attribute(
        "href",
        re.compile(
            r"hub/spawn/demo-instructor/algorithms-in-python\?next=.*"
            r"user%2Fdemo-instructor%2Falgorithms-in-python%2Fformgrader$"
        ),
    )
    shots.publish(shots.take(page, "instructor-dashboard"), "instructor-dashboard.png")


def test_refused_access_says_why(
    docker_hub: HubProcess, context: BrowserContext, shots: Shots
) -> None:
    page = context.new_page()
    sign_up(page, docker_hub, "alan-turing", "enigma-bombe-1940")
    page.goto(f"{docker_hub.url}hub/spawn/alan-turing/{COURSE}")
    body = page.locator("body")
    expect(body).to_contain_text("You do not have access to the course")
    expect(body).to_contain_text("Algorithms in Python")
    expect(page.locator(".learnhub-refused-help a").first).to_be_visible()
    shots.take(page, "refused")


ZH_PAGES = [
    ("catalog", "", "课程目录"),
    ("course", f"courses/{COURSE}", "课程大纲"),
    ("cancel", "checkout/cancel", "已取消结账"),
    ("purchases", "purchases", "购买记录"),
    ("instructor", f"instructor/{COURSE}", "讲师看板"),
    ("admin", "admin", "运营看板"),
]


@pytest.fixture
def zh_admin(docker_hub: HubProcess, chromium: Browser) -> Iterator[BrowserContext]:
    """A signed-in admin whose browser prefers Simplified Chinese."""
    ctx = new_context(chromium, locale="zh-CN")
    page = ctx.new_page()
    sign_in_to_service(page, docker_hub, "demo-admin", PASSWORD)
    page.close()
    yield ctx
    ctx.close()


@pytest.mark.parametrize(("name", "path", "text"), ZH_PAGES, ids=[p[0] for p in ZH_PAGES])
def test_page_in_chinese(
    docker_hub: HubProcess, zh_admin: BrowserContext, shots: Shots, name: str, path: str, text: str
) -> None:
    page = zh_admin.new_page()
    try:
        page.goto(service_url(docker_hub, path))
        expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        expect(page.locator("main")).to_contain_text(text)
        shots.take(page, name)
        # The visible toggle switches to English and back.
        page.locator("#learnhub-lang-toggle a", has_text="English").click()
        expect(page.locator("html")).to_have_attribute("lang", "en")
        page.locator("#learnhub-lang-toggle a", has_text="简体中文").click()
        expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    finally:
        page.close()


@pytest.mark.parametrize(
    ("locale", "viewport"),
    [("en-US", DESKTOP), ("en-US", PHONE), ("zh-CN", DESKTOP), ("zh-CN", PHONE)],
    ids=["en-desktop", "en-phone", "zh-desktop", "zh-phone"],
)
def test_visitor_pages_are_accessible(
    docker_hub: HubProcess,
    chromium: Browser,
    shots: Shots,
    locale: str,
    viewport: ViewportSize,
) -> None:
    """Every page a visitor meets on the way to paying, checked by axe-core (serious and
    critical violations fail), in both languages, at desktop and at phone width: the catalog,
    a course page, its free lesson, sign-in, sign-up, My courses and the demo checkout. At
    phone width the navigation folds behind its Menu button and nothing scrolls sideways."""
    context = new_context(chromium, locale=locale, viewport=viewport)
    page = context.new_page()
    lang = "zh-CN" if locale == "zh-CN" else "en"
    phone = viewport == PHONE
    found: list[str] = []

    def check(step: str) -> None:
        expect(page.locator("html")).to_have_attribute("lang", lang)
        found.extend(serious_violations(page))
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{page.url} scrolls sideways by {overflow}px at {viewport}"
        shots.take(page, step)

    try:
        page.goto(service_url(docker_hub))
        expect(page.locator("#learnhub-catalog")).to_be_visible()
        if phone:
            # Folded: the links appear only once the Menu button is pressed.
            expect(page.locator("#learnhub-nav-catalog")).to_be_hidden()
            page.click("#learnhub-nav-toggler")
            expect(page.locator("#learnhub-nav-catalog")).to_be_visible()
            expect(page.locator("#login")).to_be_visible()
        else:
            expect(page.locator("#learnhub-nav-toggler")).to_be_hidden()
        check("catalog")
        page.goto(service_url(docker_hub, f"courses/{COURSE}"))
        check("course")
        page.click("#learnhub-preview-link")
        expect(page.locator("#learnhub-preview")).to_be_visible()
        check("preview")
        page.goto(f"{docker_hub.url}hub/login")
        expect(page.locator("#login_submit")).to_be_visible()
        check("sign-in")
        page.goto(f"{docker_hub.url}hub/signup")
        check("sign-up")
        fill_sign_up(page, f"a11y-{lang.lower()}-{viewport['width']}", "accessible-4-everyone")
        expect(page.locator("#learnhub-home")).to_be_visible()
        check("my-courses")
        # Signed in to the Hub; "Sign in to buy" completes the service's sign-in hop.
        page.goto(service_url(docker_hub, f"courses/{COURSE}"))
        page.locator(".learnhub-signin").click()
        page.locator(".learnhub-buy").click()
        expect(page.locator("#learnhub-demo-checkout")).to_be_visible()
        check("checkout")
    finally:
        context.close()
        print("\n".join(found))
    assert found == [], "\n".join(found)
