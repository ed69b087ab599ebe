"""Rich Q&A and moderation in real headless Chromium against a real hub, proxy and service.

A member posts a question with a Python code block and, in the same post, every way to run
script a member might try. The readers' browsers ignore the pages' Content-Security-Policy
(``bypass_csp``): the policy forbids all script anyway, so only with it switched off does the
test show that the *rendering* (hub/markdown.py) lets nothing run. Then another member reports
the post, the course's instructor hides it from the dashboard's queue, and it is gone for
members while its author sees it marked hidden.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import Shots
from tests.browser.test_journey_chromium import service_url, sign_in_to_service, sign_up
from tests.harness import HubProcess, run_learnhub

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("report_on_failure")]

COURSE = "python-foundations"
PASSWORD = "learnhub-demo"
AUTHOR, AUTHOR_PASSWORD = "mallory-member", "markdown-is-not-html"
TITLE = "How do I sort pairs by their second item?"
#: A member's post: a code block, and script in every form a member might try.
POST = """Sorting a list of pairs:

```python
def by_second(pairs):
    return sorted(pairs, key=lambda p: p[1])
```

<script>window.__pwned = "script"; document.title = "pwned"</script>

<img src="x" onerror="window.__pwned = 'img'">

[see the docs](javascript:window.__pwned='md-link';document.title='pwned')

<a href="javascript:window.__pwned='raw-link'">raw link</a>

Autolinks stay links: <http://localhost/never-followed-by-this-test>
"""


def reader(chromium: Browser) -> BrowserContext:
    """An English-speaking browser that ignores Content-Security-Policy (see the docstring)."""
    context = chromium.new_context(
        locale="en-US", viewport={"width": 1280, "height": 900}, bypass_csp=True
    )
    context.set_default_timeout(60_000)
    return context


@pytest.fixture
def contexts(chromium: Browser) -> Iterator[list[BrowserContext]]:
    """Fresh cookie jars, closed after the test."""
    made: list[BrowserContext] = []
    yield made
    for context in made:
        context.close()


def open_as(
    chromium: Browser, contexts: list[BrowserContext], hub: HubProcess, user: str, password: str
) -> Page:
    context = reader(chromium)
    contexts.append(context)
    page = context.new_page()
    sign_in_to_service(page, hub, user, password)
    return page


def assert_nothing_ran(page: Page) -> None:
    assert page.evaluate("() => window.__pwned === undefined"), page.evaluate("window.__pwned")
    assert page.title() != "pwned"
    post = page.locator("#learnhub-question .learnhub-post")
    assert post.locator("script, img, iframe, [onerror]").count() == 0
    hrefs = post.locator("a").evaluate_all("links => links.map(a => a.href)")
    assert hrefs == ["http://localhost/never-followed-by-this-test"], hrefs


def test_code_is_highlighted_and_script_in_a_post_never_runs(
    docker_hub: HubProcess, chromium: Browser, contexts: list[BrowserContext], shots: Shots
) -> None:
    # The author is a new member with the course.
    context = reader(chromium)
    contexts.append(context)
    page = context.new_page()
    sign_up(page, docker_hub, AUTHOR, AUTHOR_PASSWORD)
    granted = run_learnhub(docker_hub, "grant", AUTHOR, COURSE)
    assert granted.returncode == 0, granted.stderr
    # Signed in at the hub already: the service's OAuth hop brings the member straight back.
    page.goto(service_url(docker_hub, f"courses/{COURSE}/questions"))
    page.fill("#q-title", TITLE)
    page.fill("#q-body", POST)
    page.click("#learnhub-ask-form button[type=submit]")
    expect(page.locator("#learnhub-question h1")).to_have_text(TITLE)

    # Another member reads it: the code is highlighted by the stylesheet, nothing ran.
    member = open_as(chromium, contexts, docker_hub, "demo-learner", PASSWORD)
    member.goto(page.url)
    keyword = member.locator("#learnhub-question pre.learnhub-code span.tok-k").first
    expect(keyword).to_have_text("def")
    expect(keyword).to_have_css("color", "rgb(0, 128, 0)")  # Pygments' keyword green
    assert_nothing_ran(member)
    expect(member.locator("#learnhub-question .learnhub-post")).to_contain_text(
        '<script>window.__pwned = "script"'
    )  # shown as the text it is
    # Clicking the javascript: "links" (now plain text, each its own paragraph) goes nowhere
    # and runs nothing.
    before = member.url
    post = member.locator("#learnhub-question .learnhub-post")
    post.locator("p", has_text="see the docs").click()
    post.locator("p", has_text="raw link").click()
    assert member.url == before
    assert_nothing_ran(member)
    shots.take(member, "rich-question")

    # The rules page is a link away.
    member.click("#learnhub-rules-link")
    expect(member.locator("#learnhub-rules")).to_contain_text("Be kind.")


def test_a_reported_post_hidden_by_the_instructor_disappears_for_members(
    docker_hub: HubProcess, chromium: Browser, contexts: list[BrowserContext]
) -> None:
    questions = service_url(docker_hub, f"courses/{COURSE}/questions")
    member = open_as(chromium, contexts, docker_hub, "demo-learner", PASSWORD)
    member.goto(questions)
    member.locator(".learnhub-question a", has_text=TITLE).click()
    question_url = member.url
    question_id = re.search(r"/questions/(\d+)$", question_url).group(1)  # type: ignore[union-attr]

    # The member reports it, with a reason.
    member.locator("#learnhub-question .learnhub-report summary").click()
    member.fill(f"#reason-q{question_id}", "Tries to run script in readers' browsers.")
    member.locator("#learnhub-question .learnhub-report button[type=submit]").click()
    expect(member.locator("#learnhub-message")).to_contain_text("will review this post")

    # The instructor sees it in the dashboard's queue and hides it.
    teacher = open_as(chromium, contexts, docker_hub, "demo-instructor", PASSWORD)
    teacher.goto(service_url(docker_hub, f"instructor/{COURSE}"))
    item = teacher.locator(f'li.learnhub-reported[data-kind="question"][data-post="{question_id}"]')
    expect(item).to_contain_text("Tries to run script in readers' browsers.")
    assert teacher.evaluate("() => window.__pwned === undefined")  # the queue shows the post too
    item.locator(".learnhub-mod-hide").click()
    expect(teacher.locator("#learnhub-moderation-empty")).to_be_visible()
    expect(teacher.locator("#learnhub-moderation-log")).to_contain_text("demo-instructor: Hide")

    # Gone for members: not listed, and its page is a 404.
    member.goto(questions)
    expect(member.locator("#learnhub-ask-form")).to_be_visible()
    expect(member.locator(".learnhub-question", has_text=TITLE)).to_have_count(0)
    response = member.goto(question_url)
    assert response is not None and response.status == 404

    # Its author still sees it, marked hidden.
    author = open_as(chromium, contexts, docker_hub, AUTHOR, AUTHOR_PASSWORD)
    author.goto(question_url)
    expect(author.locator("#learnhub-question .learnhub-hidden-badge")).to_be_visible()
    expect(author.locator("#learnhub-question")).to_contain_text("A moderator hid this post")
