"""The instructor's journey (issue #13, done-when) in real Chromium, against one real hub.

An instructor with no shell (the Hub's user ``demo-instructor``, not an admin) runs a whole
assignment from the browser: release, collect, autograde, one answer graded by hand in the
formgrader of their own course server, feedback, and the grades downloaded (checked by
content) in both export formats. A learner who bought the course in the Stripe stand-in
hands in a solution through the exchange's storage (as tests/grader/test_grading_jobs.py
does: driving JupyterLab's editor to type a solution would cost minutes), sees their score and
certificate on My courses, and their feedback is the one the exchange hands them. The
certificate's verification URL works signed out; an id never issued says "not valid".

One hub for the module, one learner. The course's `completion:` counts this one assignment.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
import yaml
from playwright.sync_api import Browser, BrowserContext, Page, expect

from grader.exchange.storage import ExchangeStorage
from harness.archives import targz, untargz
from hub.store import Database
from tests.browser.conftest import Shots, new_context
from tests.browser.test_journey_chromium import (
    PASSWORD,
    service_url,
    sign_in_to_service,
    sign_up,
)
from tests.grader.test_grader_cli import give_to_service
from tests.harness import ROOT, HubProcess

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("report_on_failure")]

COURSE = "python-foundations"
ASSIGNMENT = "ps1-data-model"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
LEARNER = "grace-hopper"
LEARNER_PASSWORD = "compiler-a0-1952"
#: The hand-graded answer: its test cell is worth 3 points; the instructor gives 2.
HAND_GRADED = "p1-tests"


@pytest.fixture(scope="module")
def courses_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's copy of the demo courses: passing the course means this assignment."""
    target = tmp_path_factory.mktemp("journey-courses") / "courses"
    shutil.copytree(ROOT / "courses", target)
    path = target / COURSE / "course.yaml"
    course = yaml.safe_load(path.read_text())
    course["completion"] = {"min_percent_each": 60, "assignments": [ASSIGNMENT]}
    path.write_text(yaml.safe_dump(course, sort_keys=False))
    return target


@pytest.fixture(scope="module")
def storage(docker_hub: HubProcess) -> Iterator[ExchangeStorage]:
    db = Database(f"sqlite:///{docker_hub.learnhub_db_path}")
    store = ExchangeStorage(docker_hub.data_dir / "service" / "exchange", db)
    try:
        yield store
    finally:
        store.close()
        db.dispose()


def solution(released: bytes) -> bytes:
    """The released notebook with each answer cell replaced by the course's reference answer."""
    source = nbformat.read(ROOT / "courses" / COURSE / "source" / ASSIGNMENT / NOTEBOOK, 4)
    answers = {
        cell.metadata["nbgrader"]["grade_id"]: cell.source
        for cell in source.cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }
    nb = nbformat.reads(released.decode(), as_version=4)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = "\n".join(
                line for line in answers[grade_id].splitlines() if "### " not in line
            )
    return nbformat.writes(nb).encode()


def press(hub: HubProcess, page: Page, kind: str) -> None:
    """Press one of the assignment's job buttons; wait until the job (newest first) is done."""
    card = page.locator(f'.learnhub-job-assignment[data-assignment="{ASSIGNMENT}"]')
    card.locator(f'button[data-job="{kind}"]').click()
    wait_until_done(hub, page)


def wait_until_done(hub: HubProcess, page: Page) -> None:
    """The newest job of the panel (the poller refreshes it) ends ``done``; else the worker's
    lines of the hub's log say why."""
    newest = page.locator("#learnhub-jobs-panel tr.learnhub-job").first
    expect(newest).to_contain_text(ASSIGNMENT)
    try:
        expect(newest).to_have_attribute("data-state", re.compile("done|failed"), timeout=300_000)
        expect(newest).to_have_attribute("data-state", "done", timeout=1)
    except AssertionError as exc:
        log = hub.log_path.read_text(errors="replace").splitlines()
        worker = [line for line in log if "worker" in line or "job" in line][-60:]
        detail = f"{exc}\n{newest.inner_text()}\nworker log:\n" + "\n".join(worker)
        raise AssertionError(detail) from None


def test_instructor_runs_an_assignment_from_the_browser_and_a_passing_learner_is_certified(
    docker_hub: HubProcess,
    chromium_contexts: tuple[BrowserContext, BrowserContext, BrowserContext],
    storage: ExchangeStorage,
    shots: Shots,
) -> None:
    teacher_ctx, learner_ctx, stranger_ctx = chromium_contexts
    dashboard_url = service_url(docker_hub, f"instructor/{COURSE}")

    # 1. The instructor releases the assignment from the dashboard.
    teacher = teacher_ctx.new_page()
    sign_in_to_service(teacher, docker_hub, "demo-instructor", PASSWORD)
    teacher.goto(dashboard_url)
    release = teacher.locator(
        f'.learnhub-job-assignment[data-assignment="{ASSIGNMENT}"] '
        'form:has(input[name="kind"][value="release"]) button'
    )
    release.click()
    wait_until_done(docker_hub, teacher)
    shots.take(teacher, "released")

    # 2. A learner signs up and buys the course in the demo checkout (the Stripe stand-in).
    learner = learner_ctx.new_page()
    sign_up(learner, docker_hub, LEARNER, LEARNER_PASSWORD)
    learner.goto(service_url(docker_hub, f"courses/{COURSE}"))
    # Signed in to the Hub already: "Sign in to buy" only completes the service's OAuth.
    learner.locator(".learnhub-signin").first.click()
    learner.locator(".learnhub-buy").click()
    learner.click("#learnhub-demo-pay")
    expect(learner.locator("#learnhub-message")).to_have_attribute("data-kind", "success")

    # 3. They fetch the release and hand in the reference answers through the exchange.
    released = untargz(storage.released_archive(COURSE, ASSIGNMENT))
    released[NOTEBOOK] = solution(released[NOTEBOOK])
    storage.submit(COURSE, ASSIGNMENT, LEARNER, targz(released))
    give_to_service(storage.root)

    # 4. The instructor collects and autogrades: full marks, shown per learner.
    teacher.goto(dashboard_url)
    press(docker_hub, teacher, "collect")
    press(docker_hub, teacher, "autograde-new")
    graded = teacher.locator(f'#learnhub-jobs-panel li[data-learner="{LEARNER}"]').first
    expect(graded).to_contain_text("10/10")
    shots.take(teacher, "autograded")

    # 5. "Grade by hand" opens the formgrader in the instructor's own course server (started
    # on the way); the instructor gives one answer 2 of its 3 points.
    teacher.locator("#learnhub-formgrader").click()
    expect(teacher.locator("text=Manage Assignments").first).to_be_visible(timeout=180_000)
    server = teacher.url.split("/formgrader")[0]
    teacher.goto(f"{server}/formgrader/gradebook/{ASSIGNMENT}/{ASSIGNMENT}")
    teacher.get_by_role("link", name="Submission #1").click()
    score = teacher.locator(f"input.score#{HAND_GRADED}")
    expect(score).to_be_visible(timeout=60_000)
    # The formgrader binds its save-on-change handlers once its grade models have loaded
    # (Backbone fetches them after the page): a change typed before that is never sent.
    teacher.wait_for_load_state("networkidle")
    with teacher.expect_response(
        lambda r: "/formgrader/api/grade/" in r.url and r.request.method == "PUT"
    ) as saved:
        score.fill("2")
        score.press("Tab")
    assert saved.value.ok, saved.value.text()
    shots.take(teacher, "hand-graded")

    # 6. Back on the dashboard: feedback returns the grades (the hand grade included).
    teacher.goto(dashboard_url)
    press(docker_hub, teacher, "feedback")

    # 7. Grades downloaded from the browser, in both formats, through nbgrader's exporters.
    form = teacher.locator("#learnhub-grades-export")
    with teacher.expect_download() as got:
        form.locator("#learnhub-grades-csv").click()
    rows = list(csv.DictReader(io.StringIO(Path(got.value.path()).read_text())))
    (row,) = [r for r in rows if r["student"] == LEARNER]
    assert float(row["score"]) == 9.0 and float(row["max_score"]) == 10.0, row
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+\+00:00", row["submitted_at"]), row
    form.locator("select[name=exporter]").select_option("moodle")
    with teacher.expect_download() as got:
        form.locator("#learnhub-grades-csv").click()
    moodle = list(csv.reader(io.StringIO(Path(got.value.path()).read_text())))
    assert moodle[0] == ["username", "ps1-data-model", "ps2-functions-generators"], moodle
    assert [LEARNER, "9", ""] in moodle, moodle

    # 8. The dashboard shows who passed, with the certificate.
    teacher.reload()
    summary = teacher.locator("#learnhub-completion-summary")
    expect(summary).to_have_attribute("data-passed", "1")
    expect(summary).to_have_attribute("data-certified", "1")
    passed = teacher.locator(f'tr.learnhub-completion-learner[data-learner="{LEARNER}"]')
    expect(passed).to_have_attribute("data-passed", "yes")
    shots.take(teacher, "completion")

    # 9. The learner sees the returned score and their certificate on My courses, and the
    # exchange hands them the feedback (hidden tests stripped).
    learner.goto(f"{docker_hub.url}hub/home")
    course_row = learner.locator(f'tr.learnhub-course[data-course="{COURSE}"]')
    expect(course_row.locator(f'li[data-assignment="{ASSIGNMENT}"]')).to_contain_text("9 / 10")
    shots.take(learner, "home-certified")
    ((_info, _notebook, html),) = storage.feedback_of(COURSE, LEARNER, ASSIGNMENT)
    assert b"9.0 / 10.0" in html and b"BEGIN HIDDEN TESTS" not in html
    course_row.locator(".learnhub-certificate").click()
    expect(learner.locator("#learnhub-certificate")).to_have_attribute("data-status", "valid")
    verify_url = learner.locator("#learnhub-certificate-url").get_attribute("href")
    assert verify_url and "/certificates/" in verify_url

    # 10. Anyone, signed out, can verify it; an id never issued is not valid.
    stranger = stranger_ctx.new_page()
    stranger.goto(verify_url)
    certificate = stranger.locator("#learnhub-certificate")
    expect(certificate).to_have_attribute("data-status", "valid")
    expect(certificate).to_contain_text(LEARNER)
    expect(certificate).to_contain_text("Python Foundations for Working Programmers")
    expect(stranger.locator("#learnhub-certificate-status")).to_contain_text("Valid")
    shots.take(stranger, "certificate-verified")
    forged = verify_url.rsplit("/", 1)[0] + "/AAAAAAAAAAAAAAAAAAAAAA"
    response = stranger.goto(forged)
    assert response is not None and response.status == 404
    expect(stranger.locator("#learnhub-message")).to_contain_text("not valid")


@pytest.fixture
def chromium_contexts(
    chromium: Browser,
) -> Iterator[tuple[BrowserContext, BrowserContext, BrowserContext]]:
    """Three cookie jars: the instructor, the learner and a signed-out stranger."""
    made = [new_context(chromium) for _ in range(3)]
    try:
        yield made[0], made[1], made[2]
    finally:
        for ctx in made:
            ctx.close()
