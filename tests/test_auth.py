"""Sign-up and login attacks against a real hub (issue 12, findings 3 and 4), and sign-up and
login returning to the page that sent you, never off the site (issue 14).

A real JupyterHub + configurable-http-proxy with LearnHub's config (local spawner: no server is
started), driven through the sign-up and login forms with their XSRF tokens, as a browser would.
Each test uses its own loopback source address (127.0.0.x), so the per-address back-off of one
test does not leak into another and the per-address limit can be shown with two addresses.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import statistics
import threading
import time
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import bcrypt
import httpx
import pytest

from tests.harness import ROOT, Browser, HubProcess, hub_settings

PASSWORD = "correct-horse-battery"
INSTRUCTOR = "prof-ines"
ADMIN = "root-admin"
NAME_FAILURES = 3
ADDRESS_FAILURES = 6


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A hub with an instructor (in course.yaml) and an admin who have not signed up yet."""
    workdir = tmp_path_factory.mktemp("auth-hub")
    courses = workdir / "courses"
    shutil.copytree(ROOT / "courses", courses)
    course_yaml = courses / "python-foundations" / "course.yaml"
    text = course_yaml.read_text()
    assert "instructors: [demo-instructor]" in text
    course_yaml.write_text(
        text.replace(
            "instructors: [demo-instructor]", f"instructors: [demo-instructor, {INSTRUCTOR}]"
        )
    )
    settings = hub_settings(workdir, courses_dir=courses, backend="local")
    settings["hub"]["admin_users"] = [ADMIN]
    settings["auth"] = {
        "lockout": {
            "name_failures": NAME_FAILURES,
            "address_failures": ADDRESS_FAILURES,
            "seconds": 10,
            "max_seconds": 60,
        }
    }
    process = HubProcess(workdir=workdir, settings=settings)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def report(request: pytest.FixtureRequest, hub: HubProcess) -> Iterator[None]:
    """Print the hub log when the test fails."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print("===== hub log =====\n" + hub.log_tail(200))


pytestmark = pytest.mark.usefixtures("report")


class Visitor(Browser):
    """A browser whose connections come from one loopback address (127.0.0.x)."""

    def __init__(self, hub: HubProcess, address: str) -> None:
        super().__init__(hub)
        self.client.close()
        self.client = httpx.Client(
            base_url=hub.url,
            follow_redirects=True,
            timeout=120,
            transport=httpx.HTTPTransport(local_address=address),
        )

    def __enter__(self) -> Visitor:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def logged_in(self) -> bool:
        """Whether this browser's session reaches the member home page."""
        return self.client.get("hub/home").url.path.endswith("/hub/home")


def signed_up(hub: HubProcess, name: str, password: str = PASSWORD) -> None:
    """Sign ``name`` up from an address no test logs in from."""
    with Visitor(hub, "127.0.0.250") as v:
        page = v.signup(name, password)
        # A new account is signed in at once and lands on its home page.
        assert page.url.path.endswith("/hub/home"), page.text


def metric(hub: HubProcess, name: str) -> float:
    """A counter's value from the Hub's Prometheus endpoint (0 when it does not exist)."""
    response = httpx.get(
        hub.url + "hub/metrics",
        headers={"Authorization": f"token {hub.admin_token}"},
        timeout=60,
    )
    response.raise_for_status()
    match = re.search(rf"^{name} ([0-9.e+]+)$", response.text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def wait_seconds(page: httpx.Response) -> int:
    match = re.search(r"Try again in (\d+) seconds", page.text)
    assert match, page.text
    return int(match.group(1))


@pytest.mark.parametrize(
    ("name", "role"),
    [(INSTRUCTOR, "instructor"), (ADMIN, "administrator")],
)
def test_configured_names_cannot_be_claimed_by_sign_up(
    hub: HubProcess, name: str, role: str
) -> None:
    # The attack: a stranger signs up first under the instructor's / admin's name and logs in.
    with Visitor(hub, "127.0.0.2") as stranger:
        page = stranger.signup(name, PASSWORD)
        assert page.status_code == 200
        assert f"reserved for a configured {role}" in page.text, page.text
        assert "The signup was successful" not in page.text
        page = stranger.login(name, PASSWORD)
        assert "has not been authorized by an administrator yet" in page.text, page.text
        assert not stranger.logged_in()
    # The operator checks who it is, then activates the account with the admin token.
    response = hub.api("POST", f"/learnhub/accounts/{quote(name)}/activate")
    assert response.status_code == 200, response.text
    with Visitor(hub, "127.0.0.2") as owner:
        owner.login(name, PASSWORD)
        assert owner.logged_in()


def test_hub_users_without_a_password_cannot_be_claimed(hub: HubProcess) -> None:
    # The operator created this member (a grant before sign-up); a stranger picks the name.
    assert hub.api("POST", "/users/paid-pat").status_code == 201
    with Visitor(hub, "127.0.0.2") as stranger:
        page = stranger.signup("paid-pat", PASSWORD)
        assert "reserved for a configured member" in page.text, page.text
        stranger.login("paid-pat", PASSWORD)
        assert not stranger.logged_in()
    assert hub.api("POST", "/learnhub/accounts/nobody-yet/activate").status_code == 404


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("prof-in\u0435s", "U+0435 CYRILLIC SMALL LETTER IE"),
        ("\uff52\uff4f\uff4f\uff54-admin", "full-width"),
        ("root\u200b-admin", "invisible character (U+200B ZERO WIDTH SPACE)"),
        ("root\tadmin", "whitespace (U+0009 TAB)"),
        ("<b>root</b>", "markup characters"),
        ("r00t-admin", "looks too much like the existing name root-admin"),
        ("prof-lnes", "looks too much like the existing name prof-ines"),
        ("ada--lovelace", "Usernames start with a letter and use only"),
        ("9lives", "Usernames start with a letter"),
    ],
)
def test_lookalike_and_invisible_names_are_refused(hub: HubProcess, name: str, says: str) -> None:
    with Visitor(hub, "127.0.0.250") as v:
        for _ in range(2):  # the second time proves nothing was created the first time
            page = v.signup(name, PASSWORD)
            assert page.status_code == 200
            assert says in page.text, page.text
            assert "The signup was successful" not in page.text


def test_name_backs_off_after_failures_even_for_the_right_password(hub: HubProcess) -> None:
    signed_up(hub, "lock-victim")
    signed_up(hub, "lock-bystander")
    with Visitor(hub, "127.0.0.3") as attacker:
        for attempt in range(NAME_FAILURES):
            page = attacker.login("lock-victim", f"guess-{attempt}")
            assert "Invalid username or password" in page.text
        page = attacker.login("lock-victim", PASSWORD)
        assert page.status_code == 429, page.text
        assert "Too many failed logins" in page.text
        assert not attacker.logged_in()
        wait = wait_seconds(page)
    # Another member on the same address is not affected.
    with Visitor(hub, "127.0.0.3") as bystander:
        bystander.login("lock-bystander", PASSWORD)
        assert bystander.logged_in()
    time.sleep(wait + 0.5)
    with Visitor(hub, "127.0.0.3") as owner:
        owner.login("lock-victim", PASSWORD)
        assert owner.logged_in()


def test_address_backs_off_after_failures_over_many_names(hub: HubProcess) -> None:
    signed_up(hub, "addr-member")
    with Visitor(hub, "127.0.0.4") as sprayer:
        for attempt in range(ADDRESS_FAILURES):
            page = sprayer.login(f"sprayed-{attempt}", "password-spray")
            assert "Invalid username or password" in page.text
        page = sprayer.login("addr-member", PASSWORD)
        assert page.status_code == 429, page.text
        assert not sprayer.logged_in()
    with Visitor(hub, "127.0.0.5") as elsewhere:
        elsewhere.login("addr-member", PASSWORD)
        assert elsewhere.logged_in()


def test_failed_login_does_not_stall_hub_api(hub: HubProcess) -> None:
    signed_up(hub, "stall-probe")
    # Store a cost-14 hash (about 1.6 s of bcrypt on one idle core, more on a busy one) so the
    # login lasts long enough to count API calls during it on a loaded CI machine; with the
    # default cost (~0.2 s) a busy machine finished the login within two API calls.
    slow_hash = bcrypt.hashpw(b"not-the-password", bcrypt.gensalt(14))
    with sqlite3.connect(hub.data_dir / "jupyterhub.sqlite") as db:
        changed = db.execute(
            "UPDATE users_info SET password = ? WHERE username = ?", (slow_hash, "stall-probe")
        ).rowcount
    assert changed == 1
    with Visitor(hub, "127.0.0.6") as v:
        page = v.client.get("hub/login")
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
        assert xsrf
        timing: dict[str, float] = {}

        def failing_login() -> None:
            timing["start"] = time.monotonic()
            v.client.post(
                "hub/login",
                data={"_xsrf": xsrf.group(1), "username": "stall-probe", "password": "wrong-one"},
            )
            timing["end"] = time.monotonic()

        thread = threading.Thread(target=failing_login)
        thread.start()
        calls: list[tuple[float, float]] = []
        while thread.is_alive():
            started = time.monotonic()
            assert hub.api("GET", "/users/demo-learner").status_code == 200
            calls.append((started, time.monotonic()))
        thread.join()
    login_seconds = timing["end"] - timing["start"]
    latencies = [end - start for start, end in calls if timing["start"] <= start < timing["end"]]
    # While bcrypt checks the password, the Hub keeps answering: several API calls complete
    # during the login, and none of them waits anywhere near as long as the login takes.
    assert len(latencies) >= 3, (latencies, login_seconds)
    assert max(latencies) < login_seconds / 2, (latencies, login_seconds)


def test_unknown_names_cost_the_same_bcrypt_work_as_known_ones(hub: HubProcess) -> None:
    signed_up(hub, "timing-probe")
    checks = "learnhub_password_checks_total"
    durations: dict[str, list[float]] = {"unknown": [], "known": []}
    with Visitor(hub, "127.0.0.7") as v:
        for kind, name in (("unknown", "no-such-member"), ("known", "timing-probe")) * 2:
            before = metric(hub, checks)
            xsrf = re.search(r'name="_xsrf" value="([^"]+)"', v.client.get("hub/login").text)
            assert xsrf
            started = time.monotonic()
            page = v.client.post(
                "hub/login",
                data={"_xsrf": xsrf.group(1), "username": name, "password": "not-the-password"},
            )
            durations[kind].append(time.monotonic() - started)
            assert "Invalid username or password" in page.text
            assert metric(hub, checks) == before + 1, f"{kind} name: not exactly one bcrypt check"
    # Loosely: an unknown name is not answered in a fraction of a known name's time.
    unknown, known = statistics.median(durations["unknown"]), statistics.median(durations["known"])
    assert unknown > known / 3, durations


def test_passwords_over_72_bytes_get_a_message_not_a_500(hub: HubProcess) -> None:
    with Visitor(hub, "127.0.0.8") as v:
        for password in ("a" * 73, "\u00e9" * 37):
            page = v.signup("long-secret", password)
            assert page.status_code == 200
            assert "at most 72 bytes" in page.text, page.text
        fits = "b" * 72
        page = v.signup("long-secret", fits)
        assert page.url.path.endswith("/hub/home"), page.text
        v.client.cookies.clear()  # signed in by the sign-up; log in afresh
        page = v.login("long-secret", "b" * 73)
        assert page.status_code == 400, page.text
        assert "at most 72 bytes" in page.text
        v.login("long-secret", fits)
        assert v.logged_in()
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', v.client.get("hub/change-password").text)
        assert xsrf
        page = v.client.post(
            "hub/change-password",
            data={
                "_xsrf": xsrf.group(1),
                "old_password": fits,
                "new_password": "c" * 73,
                "new_password_confirmation": "c" * 73,
            },
        )
        assert page.status_code == 200
        assert "at most 72 bytes" in page.text, page.text


# -- the front door: sign-up and login come back to the page that sent you (issue 14) -------


def form_of(page: httpx.Response) -> tuple[str, str]:
    """The (action, _xsrf) of the one form on ``page``."""
    action = re.search(r'<form action="([^"]*)"', page.text)
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    assert action and xsrf, page.text
    return action.group(1).replace("&amp;", "&"), xsrf.group(1)


def test_sign_in_to_buy_then_sign_up_returns_to_the_course(hub: HubProcess) -> None:
    with Visitor(hub, "127.0.0.9") as v:
        course = v.client.get("services/learnhub/courses/python-foundations")
        sign_in = re.search(r'href="([^"]+)"[^>]*>Sign in to buy', course.text)
        assert sign_in, course.text
        login = v.client.get(v.absolute(sign_in.group(1).replace("&amp;", "&")))
        assert login.url.path.endswith("/hub/login") and "Sign in to LearnHub" in login.text
        signup_link = re.search(r'id="learnhub-signup-link" href="([^"]+)"', login.text)
        assert signup_link and "next=" in signup_link.group(1)
        signup = v.client.get(v.absolute(signup_link.group(1).replace("&amp;", "&")))
        action, xsrf = form_of(signup)
        assert "next=" in action
        back = v.client.post(
            v.absolute(action),
            data={
                "_xsrf": xsrf,
                "username": "vera-rubin",
                "signup_password": PASSWORD,
                "signup_password_confirmation": PASSWORD,
            },
        )
        # Signed in and back on the course page, with the Buy button, no second login.
        assert back.url.path == course.url.path, back.url
        assert '<span class="me-1">vera-rubin</span>' in back.text
        assert "learnhub-buy" in back.text


#: Ways to name another site as ``next`` (a backslash is a slash to some browsers).
OFF_SITE = ["https://evil.example/", "//evil.example/", "///evil.example/", "/\\evil.example/"]


@pytest.mark.parametrize(("n", "target"), list(enumerate(OFF_SITE)))
def test_sign_up_and_login_never_send_you_off_site(hub: HubProcess, n: int, target: str) -> None:
    with Visitor(hub, "127.0.0.10") as v:
        name = f"drifter-{n}"
        page = v.client.get("hub/signup", params={"next": target})
        action, xsrf = form_of(page)
        form = {"_xsrf": xsrf, "username": name, "signup_password": PASSWORD}
        form["signup_password_confirmation"] = PASSWORD
        signed_up = v.client.post(v.absolute(action), data=form, follow_redirects=False)
        assert signed_up.status_code == 302, signed_up.text
        assert_on_site(signed_up.headers["Location"])
        v.client.cookies.clear()
        page = v.client.get("hub/login", params={"next": target})
        action, xsrf = form_of(page)
        logged_in = v.client.post(
            v.absolute(action),
            data={"_xsrf": xsrf, "username": name, "password": PASSWORD},
            follow_redirects=False,
        )
        assert logged_in.status_code == 302, logged_in.text
        assert_on_site(logged_in.headers["Location"])


def assert_on_site(location: str) -> None:
    """A redirect that stays on this site: a path, never another host (a backslash, which some
    browsers read as a slash, only ever arrives escaped)."""
    assert location.startswith("/") and not location.startswith("//"), location
    assert "\\" not in location and not urlsplit(location).netloc, location
