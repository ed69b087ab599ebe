"""Enrolling a class on a real hub (issue #13, item 8): `learnhub grant COURSE --csv FILE` and
the instructor dashboard's form grant or revoke 200 members in one go, report each bad line,
and keep the good ones.

One LearnHub hub (local spawner: no server is started) for the module; the CLI runs as the
operator does (the hub's settings and admin token), the dashboard is used like a browser.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.store import Database, Entitlement
from tests.harness import ROOT, Browser, HubProcess, browser, hub_settings, run_learnhub

COURSE = "python-foundations"
GROUP = f"course-{COURSE}"
CLASS = [f"class-{i:03d}" for i in range(200)]
SERVICE = "services/learnhub/"
DASHBOARD = f"{SERVICE}instructor/{COURSE}"
ENROLMENT = f"{DASHBOARD}/enrolment"
PASSWORD = "learnhub-demo"
JSON = {"Accept": "application/json"}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    workdir = tmp_path_factory.mktemp("enrol-hub")
    process = HubProcess(
        workdir=workdir,
        settings=hub_settings(workdir, courses_dir=ROOT / "courses", backend="local"),
    )
    process.start()
    try:
        made = process.api("POST", "/users", json={"usernames": [*CLASS, "web-a", "web-b"]})
        assert made.status_code == 201, made.text
        yield process
    finally:
        process.stop()


def members(hub: HubProcess) -> set[str]:
    response = hub.api("GET", f"/groups/{GROUP}")
    assert response.status_code == 200, response.text
    return set(response.json()["users"])


def manual_grants(hub: HubProcess, *, status: str = "active") -> set[str]:
    db = Database(f"sqlite:///{hub.learnhub_db_path}")
    try:
        with db.transaction() as session:
            rows = session.query(Entitlement).filter_by(
                course_id=COURSE, source="manual", status=status
            )
            return {row.username for row in rows}
    finally:
        db.dispose()


def test_a_class_of_200_is_granted_and_revoked_by_one_command(
    hub: HubProcess, tmp_path: Path
) -> None:
    roster = tmp_path / "class.csv"
    roster.write_text(
        "username,email\n"
        + "".join(f"{name},{name}@example.org\n" for name in CLASS[:100])
        + "nobody-here,nobody@example.org\n"  # line 102: no such account
        + "class-100,a@example.org,extra\n"  # line 103: not a member line
        + "".join(f"{name}\n" for name in CLASS[100:])
        + "class-000,not-an-address\n"  # line 204
    )
    start = time.monotonic()
    granted = run_learnhub(hub, "grant", COURSE, "--csv", str(roster), timeout=300)
    seconds = time.monotonic() - start
    print(f"learnhub grant --csv, 200 members: {seconds:.1f} s")
    # The bad lines are reported (exit status 1), the good ones applied all the same.
    assert granted.returncode == 1, granted.stderr
    assert "Traceback" not in granted.stdout + granted.stderr
    lines = granted.stdout.splitlines()
    assert lines[0] == f"{COURSE}: 200 granted, 0 already enrolled, 3 lines left out."
    assert lines[-3].startswith("line 102 (nobody-here): there is no account nobody-here")
    assert lines[-2].startswith("line 103 (class-100,a@example.org,extra): not a member line")
    assert lines[-1].startswith("line 204 (class-000,not-an-address): the second column")
    assert set(CLASS) <= members(hub)
    assert "nobody-here" not in members(hub)
    assert set(CLASS) <= manual_grants(hub)

    again = run_learnhub(hub, "grant", COURSE, "class-000", "class-001", timeout=120)
    assert again.returncode == 0, again.stderr
    assert (
        again.stdout.splitlines()[0]
        == f"{COURSE}: 0 granted, 2 already enrolled, 0 lines left out."
    )

    roster.write_text("".join(f"{name}\n" for name in CLASS))
    revoked = run_learnhub(hub, "revoke", COURSE, "--csv", str(roster), timeout=300)
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.splitlines()[0].startswith(f"{COURSE}: 200 revoked, 0 had no access")
    assert not set(CLASS) & members(hub)
    assert set(CLASS) <= manual_grants(hub, status="revoked")


def test_the_older_user_course_order_still_works(hub: HubProcess) -> None:
    granted = run_learnhub(hub, "grant", "class-150", COURSE, timeout=120)
    assert granted.returncode == 0, granted.stderr
    assert f"granted: class-150 can now open {COURSE}" in granted.stdout
    revoked = run_learnhub(hub, "revoke", "class-150", COURSE, timeout=120)
    assert f"revoked: class-150 can no longer open {COURSE}" in revoked.stdout
    unknown = run_learnhub(hub, "grant", "class-150", "no-such-course", timeout=120)
    assert unknown.returncode == 2
    assert "no such course 'class-150' or 'no-such-course'" in unknown.stderr


def sign_in(b: Browser, user: str, password: str = PASSWORD) -> None:
    """Log in to the hub, then complete the service's OAuth hand-shake."""
    assert b.login(user, password).status_code == 200
    page = b.client.get(SERVICE + "login", params={"next": b.hub_path()[:-4] + SERVICE})
    assert page.status_code == 200 and f'<span class="me-1">{user}</span>' in page.text


def xsrf(b: Browser) -> str:
    page = b.client.get(DASHBOARD)
    assert page.status_code == 200, page.text
    assert 'id="learnhub-enrolment-form"' in page.text
    match = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    assert match
    return match.group(1)


def test_an_instructor_enrols_a_class_from_the_dashboard(hub: HubProcess) -> None:
    with browser(hub) as b:
        sign_in(b, "demo-instructor")
        # A pasted list and an uploaded CSV in one form.
        page = b.client.post(
            ENROLMENT,
            data={"_xsrf": xsrf(b), "action": "grant", "roster": "web-a\nweb a\n"},
            files={"roster_file": ("class.csv", b"username,email\nweb-b,b@example.org\nghost\n")},
        )
        assert page.status_code == 200, page.text
        assert "2 granted, 0 already enrolled, 2 lines left out." in page.text
        assert "line 2 (web a): not a username" in page.text
        assert "there is no account ghost" in page.text
        assert {"web-a", "web-b"} <= members(hub)

        # The same in Chinese, as JSON.
        answer = b.client.post(
            ENROLMENT + "?lang=zh-CN",
            data={"_xsrf": xsrf(b), "action": "revoke", "roster": "web-a\nweb-b\nclass-199"},
            headers=JSON,
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["changed"] == ["web-a", "web-b"] and body["unchanged"] == ["class-199"]
        assert body["summary"].startswith(f"{COURSE}：已撤销 2 位")  # noqa: RUF001
        assert not {"web-a", "web-b"} & members(hub)

        refused = b.client.post(
            ENROLMENT, data={"_xsrf": xsrf(b), "action": "grant", "roster": ""}, headers=JSON
        )
        assert refused.status_code == 400 and refused.json()["key"] == "enrol_empty"


def test_a_learner_cannot_enrol_anyone(hub: HubProcess) -> None:
    with browser(hub) as b:
        assert b.signup("enrol-stranger", "a-long-enough-password").status_code == 200
        page = b.client.get(SERVICE + "login", params={"next": b.hub_path()[:-4] + SERVICE})
        assert page.status_code == 200
        token = re.search(r'name="_xsrf" value="([^"]+)"', b.client.get(SERVICE).text)
        assert token
        answer = b.client.post(
            ENROLMENT,
            data={"_xsrf": token.group(1), "action": "grant", "roster": "enrol-stranger"},
            headers=JSON,
        )
        assert answer.status_code == 403, answer.text
    assert "enrol-stranger" not in members(hub)
    assert "enrol-stranger" not in manual_grants(hub)
