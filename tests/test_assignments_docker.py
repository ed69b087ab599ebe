"""Assignments end to end on real parts: release → fetch → submit → collect → autograde → feedback.

The instructor uses `learnhub grader`; learners use nbgrader's Assignments tab API in their own
course containers (through the proxy, with their browser session), which talks to LearnHub's
HTTP exchange on the Docker bridge gateway. Autograding runs in sandbox containers. The feedback
a learner fetches shows their score and never the hidden tests.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import httpx
import nbformat
import pytest

from harness import flows
from tests.harness import (
    ROOT,
    Browser,
    HubProcess,
    browser,
    put_reference_solution,
    run_learnhub,
)

pytestmark = [pytest.mark.docker, pytest.mark.usefixtures("report_on_failure")]

COURSE = "python-foundations"
ASSIGNMENT = "ps1-data-model"
PASSWORD = "learnhub-demo"


def assignments_api(b: Browser, server_url: str, action: str | None = None) -> list[dict]:  # type: ignore[type-arg]
    """The Assignments tab's API for this module's assignment (:func:`flows.assignments_api`)."""
    return flows.assignments_api(b, server_url, COURSE, ASSIGNMENT, action)


def open_course(b: Browser, hub: HubProcess, user: str) -> str:
    return flows.open_course(b, hub, user, COURSE)


def hidden_test_lines() -> list[str]:
    source = ROOT / "courses" / COURSE / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    lines: list[str] = []
    for cell in nbformat.read(source, as_version=4).cells:
        inside = False
        for line in cell.source.splitlines():
            if "BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "END HIDDEN TESTS" in line:
                inside = False
            elif inside and len(line.strip()) > 12:
                lines.append(line.strip())
    assert lines, "the demo assignment should have hidden tests"
    return lines


def test_full_assignment_cycle(docker_hub: HubProcess, courses_dir: Path) -> None:
    released = run_learnhub(docker_hub, "grader", "release", COURSE, ASSIGNMENT)
    assert released.returncode == 0, released.stderr

    # Learner 1 solves it (the reference solution); learner 2 hands in the untouched release.
    # Learner 1's server starts while learner 2 works (a server takes seconds to start).
    with browser(docker_hub) as b, browser(docker_hub) as instructor:
        assert b.login("demo-learner", PASSWORD).status_code == 200
        assert b.spawn_course("demo-learner", COURSE).status_code in (201, 202)
        with browser(docker_hub) as b2:
            b2.signup("ada-solver", "difference-engine-1822")
            assert b2.login("ada-solver", "difference-engine-1822").status_code == 200
            assert run_learnhub(docker_hub, "grant", "ada-solver", COURSE).returncode == 0
            url2 = open_course(b2, docker_hub, "ada-solver")
            listed = assignments_api(b2, url2)
            assert [a["assignment_id"] for a in listed if a["status"] == "released"] == [ASSIGNMENT]
            assignments_api(b2, url2, "fetch")
            fetched = b2.contents(url2, f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb")
            assert fetched.status_code == 200
            text = json.dumps(fetched.json()["content"])
            assert "BEGIN HIDDEN TESTS" not in text and "BEGIN SOLUTION" not in text
            assignments_api(b2, url2, "submit")

        url = open_course(b, docker_hub, "demo-learner")
        assignments_api(b, url, "fetch")
        source = courses_dir / COURSE / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        put_reference_solution(b, url, source, ASSIGNMENT)
        submitted = assignments_api(b, url, "submit")
        assert any(a["status"] == "submitted" for a in submitted)

        collected = run_learnhub(docker_hub, "grader", "collect", COURSE, ASSIGNMENT)
        assert collected.returncode == 0, collected.stderr
        assert "collected 2 submissions" in collected.stdout

        graded = run_learnhub(
            docker_hub, "grader", "autograde", COURSE, ASSIGNMENT, "--parallel", "2"
        )
        assert graded.returncode == 0, graded.stderr
        scores = {
            line.split()[0]: line.split()[1]
            for line in graded.stdout.splitlines()
            if line.startswith(("demo-learner", "ada-solver"))
        }
        assert scores == {"demo-learner": "10/10", "ada-solver": "0/10"}
        # The instructor's course server (manual grading, below) starts while feedback is made.
        assert instructor.login("demo-instructor", PASSWORD).status_code == 200
        assert instructor.spawn_course("demo-instructor", COURSE).status_code in (201, 202)

        # The member home shows the learner's progress: the score of the graded assignment.
        home = b.client.get("hub/home").text
        progress = home.split('data-assignment="ps1-data-model"', 1)[1].split("</li>", 1)[0]
        assert "score 10 / 10" in progress
        assert "not submitted yet" in home.split('data-assignment="ps2-functions-generators"')[1]

        feedback = run_learnhub(docker_hub, "grader", "feedback", COURSE, ASSIGNMENT)
        assert feedback.returncode == 0, feedback.stderr

        after = assignments_api(b, url, "fetch_feedback")
        # The Assignments tab now shows the feedback as fetched.
        assert '"has_local_feedback": true' in json.dumps(after)
        folder = b.contents(url, f"{ASSIGNMENT}/feedback").json()["content"]
        (stamp,) = [item["name"] for item in folder]
        html = b.contents(url, f"{ASSIGNMENT}/feedback/{stamp}/{ASSIGNMENT}.html").json()["content"]
        assert "Score: 10.0 / 10.0" in html or "10.0 / 10.0" in html
        assert "BEGIN HIDDEN TESTS" not in html
        for line in hidden_test_lines():
            assert line not in html, f"hidden test leaked into feedback: {line}"

    exported = run_learnhub(docker_hub, "grader", "export", COURSE, ASSIGNMENT)
    assert exported.returncode == 0, exported.stderr
    rows = {row["student"]: row for row in csv.DictReader(io.StringIO(exported.stdout))}
    assert float(rows["demo-learner"]["score"]) == 10.0
    assert float(rows["ada-solver"]["score"]) == 0.0

    # The grades API: instructors and admins with a hub token; learners are refused.
    api = f"{docker_hub.url}services/learnhub/api/v1/courses/{COURSE}/grades"
    as_admin = httpx.get(
        api, headers={"Authorization": f"token {docker_hub.admin_token}"}, timeout=60
    )
    assert as_admin.status_code == 200, as_admin.text
    graded = {g["student"]: g["score"] for g in as_admin.json()["grades"]}
    assert graded == {"demo-learner": 10.0, "ada-solver": 0.0}
    learner_token = docker_hub.api("POST", "/users/demo-learner/tokens", json={}).json()["token"]
    as_learner = httpx.get(api, headers={"Authorization": f"token {learner_token}"}, timeout=60)
    assert as_learner.status_code == 403
    assert httpx.get(api, timeout=60).status_code == 401

    # Manual grading: the instructor's own course server runs the formgrader on the course's
    # grading directory; a learner's server has neither.
    with browser(docker_hub) as instructor:
        assert instructor.login("demo-instructor", PASSWORD).status_code == 200
        grading_url = open_course(instructor, docker_hub, "demo-instructor")
        formgrader = instructor.client.get(
            instructor.absolute(grading_url) + "formgrader/api/assignments",
            headers=instructor.xsrf_headers(grading_url),
        )
        assert formgrader.status_code == 200, formgrader.text
        by_name = {a["name"]: a for a in formgrader.json()}
        assert by_name[ASSIGNMENT]["num_submissions"] == 2
        page = instructor.client.get(instructor.absolute(grading_url) + "formgrader")
        assert page.status_code == 200
    with browser(docker_hub) as b:
        assert b.login("demo-learner", PASSWORD).status_code == 200
        learner_url = open_course(b, docker_hub, "demo-learner")
        refused = b.client.get(
            b.absolute(learner_url) + "formgrader/api/assignments",
            headers=b.xsrf_headers(learner_url),
        )
        assert refused.status_code == 404

    # The instructor dashboard plots submissions and scores, and offers the CSV.
    with browser(docker_hub) as instructor:
        assert instructor.login("demo-instructor", PASSWORD).status_code == 200
        page = instructor.client.get(f"services/learnhub/instructor/{COURSE}")
        assert page.status_code == 200
        assert 'id="chart-submissions"' in page.text and 'id="chart-scores"' in page.text
        assert 'id="learnhub-average-score">50.0 %' in page.text
        download = instructor.client.get(f"services/learnhub/instructor/{COURSE}/grades.csv")
        assert download.status_code == 200
        assert "demo-learner" in download.text and "ada-solver" in download.text
