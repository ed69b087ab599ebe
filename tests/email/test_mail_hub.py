"""Mail through the real stack: a running hub (local spawner), its LearnHub service, and a real
SMTP server on loopback (issue 14, item 3).

One hub for the module. Members sign up through the Hub's form with an address, confirm it from
the mail, reset a password from the mail, and get each notice (answer, accepted answer,
announcement, released feedback, a deadline within 24 h) with links that work; unsubscribing or
unticking a notice stops it; with the SMTP server down a mail is kept and sent once it is back.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from zoneinfo import ZoneInfo

import httpx
import pytest

from hub.mail import tokens
from hub.settings import DEMO_SECRET_MARKER
from tests.email.conftest import SmtpServer, html_of, links_in, text_of
from tests.harness import ROOT, Browser, HubProcess, hub_settings, run_learnhub

PASSWORD = "correct-horse-battery"
NEW_PASSWORD = "staple-lantern-orbit"
COURSE = "python-foundations"
SERVICE = "services/learnhub/"
DEMO_PASSWORD = "learnhub-demo"
#: The demo's published link key (tests run in demo mode; production refuses it).
SECRET = f"{DEMO_SECRET_MARKER}-email-links"
RESET_LIMIT = 3


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, smtp: SmtpServer) -> Iterator[HubProcess]:
    """A hub whose mail goes to ``smtp``; one assignment is due in 12 hours."""
    workdir = tmp_path_factory.mktemp("mail-hub")
    courses = workdir / "courses"
    shutil.copytree(ROOT / "courses", courses)
    course_yaml = courses / COURSE / "course.yaml"
    soon = (datetime.now(UTC) + timedelta(hours=12)).strftime("%Y-%m-%dT%H:%M:00Z")
    text = course_yaml.read_text()
    assert "due: 2027-03-01T23:59:00Z" in text
    course_yaml.write_text(text.replace("due: 2027-03-01T23:59:00Z", f"due: {soon}"))
    settings = hub_settings(workdir, courses_dir=courses, backend="local")
    settings["email"] = {
        "enabled": True,
        "from_address": "LearnHub <noreply@learnhub.test>",
        "smtp": {"host": "127.0.0.1", "port": smtp.port, "security": "none"},
        "retry_seconds": 1,
        "poll_seconds": 0.2,
        "reminder_check_seconds": 1,
        "reset_requests": RESET_LIMIT,
    }
    process = HubProcess(workdir=workdir, settings=settings)
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(autouse=True)
def report(request: pytest.FixtureRequest, hub: HubProcess) -> Iterator[None]:
    """Print the hub log when a test fails."""
    yield
    result = getattr(request.node, "rep_call", None)
    if result is not None and result.failed:
        print("===== hub log =====\n" + hub.log_tail(300))


def address(name: str) -> str:
    return f"{name}@example.org"


def subject(text: str):  # type: ignore[no-untyped-def]
    return lambda m: text in str(m["Subject"])


def xsrf_of(page: httpx.Response) -> str:
    match = re.search(r'name="_xsrf" value="([^"]+)"', page.text)
    assert match, f"no _xsrf field on {page.url}"
    return match.group(1)


def sign_in_to_service(b: Browser, user: str, password: str) -> None:
    """Log in to the hub, then complete the service's OAuth hand-shake."""
    assert b.login(user, password).status_code == 200
    page = b.client.get(SERVICE + "login", params={"next": b.hub_path()[:-4] + SERVICE})
    assert page.status_code == 200, page.text


def member(hub: HubProcess, smtp: SmtpServer, name: str, *, lang: str = "en") -> EmailMessage:
    """Sign ``name`` up, follow the confirmation link, grant the course; the confirmation mail."""
    b = Browser(hub)
    try:
        b.client.cookies.set("learnhub-lang", lang)
        page = b.signup(name, PASSWORD)
        assert page.url.path.endswith("/hub/home"), page.text
        mail = smtp.inbox.wait_for(address(name), lambda m: "/hub/verify-email?" in text_of(m))
        confirmed = b.client.get(links_in(mail)[0])
        assert confirmed.status_code == 200, confirmed.text
        assert 'data-outcome="verified"' in confirmed.text
    finally:
        b.close()
    granted = run_learnhub(hub, "grant", name, COURSE, timeout=120)
    assert granted.returncode == 0, granted.stderr
    return mail


@pytest.fixture(scope="module")
def people(hub: HubProcess, smtp: SmtpServer) -> dict[str, EmailMessage]:
    """Three members with confirmed addresses and the course; ``ola`` reads Chinese."""
    return {
        "mia": member(hub, smtp, "mia"),
        "noah": member(hub, smtp, "noah"),
        "ola": member(hub, smtp, "ola", lang="zh-CN"),
    }


def outbox(hub: HubProcess, sql: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(f"file:{hub.learnhub_db_path}?mode=ro", uri=True) as db:
        return db.execute(sql, args).fetchall()


# -- sign-up and the address ------------------------------------------------------------------


def test_signup_asks_an_address_and_the_link_confirms_it(
    hub: HubProcess, smtp: SmtpServer, people: dict[str, EmailMessage]
) -> None:
    mail = people["mia"]
    assert mail["From"] == "LearnHub <noreply@learnhub.test>"
    assert mail["Subject"] == "Confirm your email address"
    assert "mia" in text_of(mail) and "Confirm my address" in html_of(mail)
    # The sign-up page asks for the address; without one the Hub refuses the account.
    b = Browser(hub)
    try:
        assert 'name="email"' in b.client.get("hub/signup").text
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', b.client.get("hub/signup").text)
        assert xsrf
        refused = b.client.post(
            "hub/signup",
            data={
                "_xsrf": xsrf.group(1),
                "username": "no-mail",
                "email": "not an address",
                "signup_password": PASSWORD,
                "signup_password_confirmation": PASSWORD,
            },
        )
        assert "is not an email address" in refused.text
        # Confirmed: the member's mail settings say so. A forged link confirms nothing.
        sign_in_to_service(b, "mia", PASSWORD)
        settings = b.client.get(SERVICE + "email")
        assert 'data-verified="yes"' in settings.text, settings.text
        forged = links_in(mail)[0].replace("token=", "token=x")
        assert b.client.get(forged).status_code == 400
    finally:
        b.close()
    # In the member's language: ola signed up in Chinese.
    assert people["ola"]["Subject"] == "请确认您的电子邮箱地址"


# -- password reset ---------------------------------------------------------------------------


def ask_reset(hub: HubProcess, who: str, local_address: str) -> httpx.Response:
    with httpx.Client(
        base_url=hub.url,
        follow_redirects=True,
        timeout=60,
        transport=httpx.HTTPTransport(local_address=local_address),
    ) as client:
        form = client.get("hub/forgot-password")
        return client.post("hub/forgot-password", data={"_xsrf": xsrf_of(form), "email": who})


def result_text(page: httpx.Response) -> str:
    match = re.search(r'id="learnhub-forgot-result"[^>]*>([^<]*)<', page.text)
    assert match, page.text
    return match.group(1)


def test_password_reset_mail_link_works_once_and_the_new_password_signs_in(
    hub: HubProcess, smtp: SmtpServer, people: dict[str, EmailMessage]
) -> None:
    # The login page offers it.
    b = Browser(hub)
    try:
        assert 'id="learnhub-forgot-link"' in b.client.get("hub/login").text
    finally:
        b.close()
    known = ask_reset(hub, address("mia"), "127.0.0.21")
    unknown = ask_reset(hub, address("nobody-here"), "127.0.0.21")
    # Enumeration: the same status and the same words whether the address has an account.
    assert known.status_code == unknown.status_code == 200
    assert result_text(known) == result_text(unknown)
    mail = smtp.inbox.wait_for(address("mia"), subject("Reset your LearnHub password"))
    link = links_in(mail)[0]
    assert "/hub/reset-password?token=" in link
    b = Browser(hub)
    try:
        form = b.client.get(link)
        assert form.status_code == 200
        # The new password twice, in the fields every account form shares (site/password-fields).
        fields = re.findall(
            r'<label class="form-label" for="([^"]+)">([^<]+)</label>\s*<input id="\1" '
            r'type="password" name="([^"]+)" autocapitalize="off" autocorrect="off" '
            r'autocomplete="([^"]+)" class="form-control" required />',
            form.text,
        )
        assert fields == [
            ("password_input", "New password", "new_password", "new-password"),
            (
                "password_confirmation_input",
                "Confirm password",
                "new_password_confirmation",
                "new-password",
            ),
        ], form.text
        token = re.search(r'name="token" value="([^"]+)"', form.text)
        assert token
        done = b.client.post(
            "hub/reset-password",
            data={
                "_xsrf": xsrf_of(form),
                "token": token.group(1),
                "new_password": NEW_PASSWORD,
                "new_password_confirmation": NEW_PASSWORD,
            },
        )
        assert done.status_code == 200 and 'data-outcome="changed"' in done.text, done.text
        # The same link a second time: refused.
        again = b.client.get(link)
        assert again.status_code == 400 and 'data-outcome="invalid"' in again.text
    finally:
        b.close()
    b = Browser(hub)
    try:
        assert b.login("mia", PASSWORD).url.path.endswith("/hub/login")  # old one is gone
        assert b.login("mia", NEW_PASSWORD).url.path.endswith("/hub/home")
    finally:
        b.close()


def test_expired_reset_link_is_refused(hub: HubProcess) -> None:
    # A link for noah's current password, made longer ago than email.reset_minutes (60).
    with sqlite3.connect(hub.data_dir / "jupyterhub.sqlite") as db:
        (stored,) = db.execute("SELECT password FROM users_info WHERE username='noah'").fetchone()
    fingerprint = tokens.password_fingerprint(SECRET, stored)
    old = tokens.sign(SECRET, "reset", {"u": "noah", "p": fingerprint}, now=time.time() - 3700)
    fresh = tokens.sign(SECRET, "reset", {"u": "noah", "p": fingerprint})
    with httpx.Client(base_url=hub.url, timeout=60) as client:
        expired = client.get("hub/reset-password", params={"token": old})
        assert expired.status_code == 400 and 'data-outcome="expired"' in expired.text
        # The control: the same link made now opens the form.
        assert client.get("hub/reset-password", params={"token": fresh}).status_code == 200


def test_reset_requests_are_rate_limited(hub: HubProcess) -> None:
    pages = [ask_reset(hub, address(f"x{n}"), "127.0.0.22") for n in range(RESET_LIMIT + 1)]
    assert [p.status_code for p in pages[:RESET_LIMIT]] == [200] * RESET_LIMIT
    assert pages[-1].status_code == 429 and "Retry-After" in pages[-1].headers
    # Another client address is not held back by this one.
    assert ask_reset(hub, address("x0"), "127.0.0.23").status_code == 200


def test_the_rate_limit_warning_names_the_client_not_an_address(hub: HubProcess) -> None:
    """``address`` means a mail address in LearnHub's log; the warning's IP is the ``client``,
    as in the mail pages' other lines."""
    start = len(hub.log_path.read_text(errors="replace"))
    pages = [ask_reset(hub, address(f"y{n}"), "127.0.0.24") for n in range(RESET_LIMIT + 1)]
    assert pages[-1].status_code == 429
    line = log_line(hub, start, LEARNHUB_LINE.replace(".*", "password reset rate limited .*"))
    assert line.split(" ", 1)[1] == (
        "WARNING learnhub.mail password reset rate limited client=127.0.0.24 outcome=429"
    ), line


# -- the Hub's log ----------------------------------------------------------------------------

#: A LearnHub record as the Hub writes it: as the service does (hub.logs.KeyValueFormatter).
LEARNHUB_LINE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) learnhub\.\S+ .*"


def log_line(hub: HubProcess, start: int, pattern: str, timeout: float = 30) -> str:
    """The first whole line of the hub's log after ``start`` (characters) that matches
    ``pattern``, waiting for it: the reset form's look-up runs after its answer."""
    deadline = time.monotonic() + timeout
    while True:
        log = hub.log_path.read_text(errors="replace")[start:]
        found = re.search(rf"^(?:{pattern})$", log, re.MULTILINE)
        if found:
            return found.group(0)
        assert time.monotonic() < deadline, f"no line {pattern!r} in:\n{log[-4000:]}"
        time.sleep(0.1)


def test_learnhub_lines_in_the_hubs_log_carry_their_extras(
    hub: HubProcess, smtp: SmtpServer, people: dict[str, EmailMessage]
) -> None:
    """In the Hub's process LearnHub's records are written as the service writes them: time,
    level, logger, message, then the record's ``extra`` as ``key=value`` (JupyterHub's
    formatter printed the message alone, and nothing below WARNING); JupyterHub's own lines
    keep their format, and the reset link's token is in none of them."""
    start = len(hub.log_path.read_text(errors="replace"))
    assert ask_reset(hub, address("noah"), "127.0.0.41").status_code == 200
    assert ask_reset(hub, address("nobody-else"), "127.0.0.41").status_code == 200
    queued = log_line(hub, start, LEARNHUB_LINE.replace(".*", "password reset link queued .*"))
    assert queued.split(" ", 1)[1] == (
        "INFO learnhub.mail password reset link queued outcome=queued user=noah"
    )
    unknown = log_line(hub, start, LEARNHUB_LINE.replace(".*", "password reset asked .*"))
    assert unknown.endswith(" for an unknown address outcome=none"), unknown
    mail = smtp.inbox.wait_for(address("noah"), subject("Reset your LearnHub password"))
    token = links_in(mail)[0].split("token=")[1]
    log = hub.log_path.read_text(errors="replace")[start:]
    assert token not in log
    # JupyterHub's own access line for the same request, in JupyterHub's format.
    assert re.search(
        r"^\[I \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} JupyterHub log:\d+\] 200 POST "
        r"\S*/hub/forgot-password \(@127\.0\.0\.41\) [0-9.]+ms$",
        log,
        re.MULTILINE,
    ), log


# -- LearnHub's database unavailable ------------------------------------------------------------

#: What every mail page says while LearnHub's database cannot be used, in each language.
UNAVAILABLE = {"en": "The mail service is unavailable right now", "zh-CN": "邮件服务暂时不可用"}


@contextmanager
def service_database_refused(hub: HubProcess) -> Iterator[None]:
    """LearnHub's SQLite file as the Hub's safety check refuses it (hub.store.hub_side): owned
    by root, not by the service's user, as a file someone else put there would be. The service
    keeps its access through its group meanwhile, so only the Hub notices."""
    path = hub.learnhub_db_path
    before = path.stat()
    os.chown(path, 0, before.st_gid)
    path.chmod(0o660)
    try:
        yield
    finally:
        os.chown(path, before.st_uid, before.st_gid)
        path.chmod(before.st_mode & 0o7777)


def unavailable_page(page: httpx.Response, lang: str) -> None:
    """A 503 that says, in ``lang``, to try again later, with Retry-After; no traceback."""
    assert page.status_code == 503, (page.status_code, page.text)
    assert int(page.headers["Retry-After"]) > 0
    assert f'<html lang="{lang}">' in page.text
    assert UNAVAILABLE[lang] in page.text, page.text
    assert "Traceback" not in page.text


def test_mail_pages_answer_503_and_lose_nothing_while_the_database_is_refused(
    hub: HubProcess, smtp: SmtpServer
) -> None:
    """With LearnHub's database refused by the Hub's check after the Hub has used it (earlier
    tests did), every mail page says so (503, both languages, Retry-After) instead of
    JupyterHub's 500; a sign-up still makes the account, signs it in and says how to get the
    confirmation mail again, which then works; the reset form answers the same whatever the
    address; the log has one warning per page, no traceback and no token."""
    verify = tokens.sign(SECRET, "verify", {"u": "kai", "a": address("kai")})
    kai, lan = Browser(hub), Browser(hub)
    lan.client.cookies.set("learnhub-lang", "zh-CN")
    log_start = len(hub.log_path.read_text(errors="replace"))
    try:
        with service_database_refused(hub):
            signed_up = kai.signup("kai", PASSWORD)
            unavailable_page(signed_up, "en")
            assert 'data-outcome="mail-unavailable"' in signed_up.text
            assert "kai@example.org" in signed_up.text and "“Mail settings”" in signed_up.text
            unavailable_page(lan.signup("lan", PASSWORD), "zh-CN")
            # The accounts exist, with their address, and are signed in.
            assert kai.client.get("hub/home").url.path.endswith("/hub/home")
            assert lan.client.get("hub/home").url.path.endswith("/hub/home")
            with sqlite3.connect(hub.data_dir / "jupyterhub.sqlite") as db:
                kept = db.execute(
                    "SELECT username, email, password FROM users_info "
                    "WHERE username IN ('kai', 'lan') ORDER BY username"
                ).fetchall()
            assert [row[:2] for row in kept] == [("kai", address("kai")), ("lan", address("lan"))]
            # A reset link needs only the Hub's database: it still opens the form.
            fingerprint = tokens.password_fingerprint(SECRET, kept[0][2])
            reset = tokens.sign(SECRET, "reset", {"u": "kai", "p": fingerprint})
            opened = httpx.get(f"{hub.url}hub/reset-password", params={"token": reset}, timeout=60)
            assert opened.status_code == 200, opened.text
            for lang in ("en", "zh-CN"):
                confirmed = httpx.get(
                    f"{hub.url}hub/verify-email",
                    params={"token": verify},
                    headers={"Accept-Language": lang},
                    timeout=60,
                )
                unavailable_page(confirmed, lang)
            # The reset form: the same answer for an address with an account and without.
            known = ask_reset(hub, address("mia"), "127.0.0.31")
            unknown = ask_reset(hub, address("nobody-at-all"), "127.0.0.32")
            unavailable_page(known, "en")
            assert (known.status_code, result_text(known)) == (503, result_text(unknown))
            form = lan.client.get("hub/forgot-password")
            asked = lan.client.post(
                "hub/forgot-password", data={"_xsrf": xsrf_of(form), "email": address("lan")}
            )
            unavailable_page(asked, "zh-CN")
            log = hub.log_path.read_text(errors="replace")[log_start:]
        warnings = [line for line in log.splitlines() if "mail service unavailable" in line]
        assert len(warnings) == 7, log
        for page_name in ("signup", "verify-email", "forgot-password"):
            assert any(f"page={page_name} " in line for line in warnings), warnings
        assert all('reason="refused: belongs to uid 0,' in line for line in warnings), warnings
        assert "Traceback" not in log and verify not in log and reset not in log, log
        # Once the database is back, "Mail settings" sends the confirmation the page promised.
        sign_in_to_service(kai, "kai", PASSWORD)
        page = kai.client.get(SERVICE + "email")
        sent = kai.client.post(
            SERVICE + "email/address", data={"_xsrf": xsrf_of(page), "address": address("kai")}
        )
        assert 'id="learnhub-email-sent"' in sent.text, sent.text
        mail = smtp.inbox.wait_for(address("kai"), subject("Confirm your email"))
        assert 'data-outcome="verified"' in kai.client.get(links_in(mail)[0]).text
    finally:
        kai.close()
        lan.close()


#: What the member home says while LearnHub's database cannot be used, in each language.
RECORDS_UNAVAILABLE = {
    "en": "Your course records cannot be shown right now",
    "zh-CN": "暂时无法显示你的课程记录",
}


def test_member_home_keeps_the_courses_while_the_database_is_refused(
    hub: HubProcess, people: dict[str, EmailMessage]
) -> None:
    """Course servers do not need LearnHub's database, so the member home (rendered by the Hub)
    does not fail with it: with the file refused by the Hub's check while the Hub runs, it
    answers 200 with the member's course and its Launch link, without the database's notes,
    and says so in the member's language (neither JupyterHub's 500 nor a 503 that would hide
    the courses); the log names the refusal with its details, and has no traceback."""
    log_start = len(hub.log_path.read_text(errors="replace"))
    for name, lang in (("noah", "en"), ("ola", "zh-CN")):
        b = Browser(hub)
        try:
            b.client.cookies.set("learnhub-lang", lang)
            assert b.login(name, PASSWORD).url.path.endswith("/hub/home")
            with service_database_refused(hub):
                page = b.client.get("hub/home")
            assert page.status_code == 200, page.text
            assert f'<html lang="{lang}">' in page.text
            assert RECORDS_UNAVAILABLE[lang] in page.text, page.text
            assert f'data-course="{COURSE}"' in page.text
            assert f"spawn/{name}/{COURSE}" in page.text
            assert "Traceback" not in page.text
            # The control: with the file back, the notice is gone.
            assert RECORDS_UNAVAILABLE[lang] not in b.client.get("hub/home").text
        finally:
            b.close()
    log = hub.log_path.read_text(errors="replace")[log_start:]
    refused = [line for line in log.splitlines() if " learnhub database refused " in line]
    assert refused and all(
        f"path={hub.learnhub_db_path} " in line and 'reason="belongs to uid 0,' in line
        for line in refused
    ), log
    assert "Traceback" not in log, log


def test_only_the_member_home_reads_learnhub_database(
    hub: HubProcess, people: dict[str, EmailMessage]
) -> None:
    """JupyterHub evaluates every ``template_vars`` callable for every page it renders for a
    signed-in member; the home page's courses (LearnHub's database, every course folder) must
    be read only for the home page: with the file refused, the token page and an error page
    log no refusal (and, locked, would not wait on it); the home page does (the control)."""
    b = Browser(hub)
    try:
        assert b.login("noah", PASSWORD).url.path.endswith("/hub/home")
        with service_database_refused(hub):
            start = len(hub.log_path.read_text(errors="replace"))
            assert b.client.get("hub/token").status_code == 200
            assert b.client.get("hub/no-such-page").status_code == 404
            # The Hub's access line for the last page comes after anything its render logged.
            last = log_line(hub, start, r".* 404 GET \S*/hub/no-such-page .*")
            log = hub.log_path.read_text(errors="replace")
            others = log[start : log.index(last, start)]
            start = log.index(last, start) + len(last)
            assert b.client.get("hub/home").status_code == 200
            home = log_line(hub, start, r".* learnhub database refused .*")
    finally:
        b.close()
    assert " learnhub database refused " not in others, others
    assert f"path={hub.learnhub_db_path} " in home, home


# -- notices ----------------------------------------------------------------------------------


def test_answer_and_accepted_answer_notices(
    hub: HubProcess, smtp: SmtpServer, people: dict[str, EmailMessage]
) -> None:
    asker, answerer = Browser(hub), Browser(hub)
    try:
        sign_in_to_service(asker, "ola", PASSWORD)
        sign_in_to_service(answerer, "noah", PASSWORD)
        questions = f"{SERVICE}courses/{COURSE}/questions"
        asked = asker.client.post(
            questions,
            data={
                "_xsrf": xsrf_of(asker.client.get(questions)),
                "title": "Why <b>yield</b>?",
                "body": "Generators puzzle me.",
            },
        )
        assert asked.status_code == 200
        question_path = str(asked.url)
        answered = answerer.client.post(
            question_path,
            data={"_xsrf": xsrf_of(answerer.client.get(question_path)), "body": "Laziness."},
        )
        assert answered.status_code == 200
        mail = smtp.inbox.wait_for(address("ola"), lambda m: "/questions/" in text_of(m))
        assert "新回答" in str(mail["Subject"])  # ola's language
        assert "<b>yield</b>" not in html_of(mail) and "&lt;b&gt;yield&lt;/b&gt;" in html_of(mail)
        opened = asker.client.get(links_in(mail)[0])
        assert opened.status_code == 200 and "Laziness." in opened.text
        # ola accepts: noah (the answer's author) hears of it.
        answer_id = re.search(r"/answers/([0-9]+)/accept", opened.text)
        assert answer_id, opened.text
        accepted = asker.client.post(
            f"{SERVICE}courses/{COURSE}/answers/{answer_id.group(1)}/accept",
            data={"_xsrf": xsrf_of(opened)},
        )
        assert accepted.status_code == 200
        mail = smtp.inbox.wait_for(address("noah"), subject("An answer was accepted"))
        assert answerer.client.get(links_in(mail)[0]).status_code == 200
    finally:
        asker.close()
        answerer.close()


def announce(hub: HubProcess, text: str) -> None:
    b = Browser(hub)
    try:
        sign_in_to_service(b, "demo-instructor", DEMO_PASSWORD)
        dashboard = f"{SERVICE}instructor/{COURSE}"
        posted = b.client.post(
            dashboard + "/announce", data={"_xsrf": xsrf_of(b.client.get(dashboard)), "text": text}
        )
        assert posted.status_code == 200, posted.text
    finally:
        b.close()


def test_announcement_notice_and_unsubscribe_link(
    hub: HubProcess, smtp: SmtpServer, people: dict[str, EmailMessage]
) -> None:
    announce(hub, "Office hours move to Friday.")
    mail = smtp.inbox.wait_for(address("mia"), lambda m: "Office hours move" in text_of(m))
    assert mail["Subject"] == "New announcement in Python Foundations for Working Programmers"
    course_link, unsubscribe = links_in(mail)[0], links_in(mail)[1]
    assert mail["List-Unsubscribe"] == f"<{unsubscribe}>"
    with httpx.Client(timeout=60, follow_redirects=True) as anonymous:
        assert anonymous.get(course_link).status_code == 200
        # GET only asks (mail scanners follow links); the button unsubscribes, no sign-in needed.
        ask = anonymous.get(unsubscribe)
        assert 'data-outcome="ask"' in ask.text
        token = re.search(r'name="token" value="([^"]+)"', ask.text)
        assert token
        done = anonymous.post(unsubscribe.split("?")[0], data={"token": token.group(1)})
        assert 'data-outcome="done"' in done.text, done.text
    announce(hub, "Second notice: room B2.")
    # noah still gets it; by then mia's notice would have been queued in the same transaction.
    smtp.inbox.wait_for(address("noah"), lambda m: "room B2" in text_of(m))
    assert not [m for m in smtp.inbox.to(address("mia")) if "room B2" in text_of(m)]
    assert not outbox(
        hub, "SELECT id FROM mail_outbox WHERE username='mia' AND params LIKE ?", "%room B2%"
    )


def test_settings_page_opt_out_stops_a_notice(
    hub: HubProcess, smtp: SmtpServer, people: dict[str, EmailMessage]
) -> None:
    b = Browser(hub)
    try:
        sign_in_to_service(b, "noah", PASSWORD)
        form = b.client.get(SERVICE + "email")
        kept = ["feedback", "answer", "deadline"]  # announcements unticked
        saved = b.client.post(
            SERVICE + "email",
            data={"_xsrf": xsrf_of(form), "notice": kept, "language": "en"},
        )
        assert 'id="learnhub-email-saved"' in saved.text
        assert 'id="notice-announcement" name="notice" value="announcement">' in saved.text
    finally:
        b.close()
    announce(hub, "Third notice: bring laptops.")
    smtp.inbox.wait_for(address("ola"), lambda m: "bring laptops" in text_of(m))
    assert not [m for m in smtp.inbox.to(address("noah")) if "bring laptops" in text_of(m)]


def test_feedback_released_notice(
    hub: HubProcess, smtp: SmtpServer, people: dict[str, EmailMessage]
) -> None:
    # What releasing feedback ends with, from the dashboard's job or the command line alike
    # (grader.course.GradingCourse.feedback), as its database child runs it.
    from hub.mail.notices import feedback_released
    from hub.store import Database

    db = Database(f"sqlite:///{hub.learnhub_db_path}")
    try:
        assert feedback_released(db, COURSE, "ps1-data-model", ["mia"], "job-1") == 1
    finally:
        db.dispose()
    mail = smtp.inbox.wait_for(address("mia"), subject("Feedback on"))
    b = Browser(hub)
    try:
        b.login("mia", NEW_PASSWORD)
        home = b.client.get(links_in(mail)[0])
        assert home.status_code == 200 and home.url.path.endswith("/hub/home")
    finally:
        b.close()


def test_deadline_within_a_day_is_reminded_once(
    hub: HubProcess, smtp: SmtpServer, people: dict[str, EmailMessage]
) -> None:
    mail = smtp.inbox.wait_for(address("noah"), subject("is due within 24 hours"))
    assert "Problem set 1" in str(mail["Subject"])
    with httpx.Client(timeout=60, follow_redirects=True) as client:
        assert client.get(links_in(mail)[0]).status_code == 200
    # Checked every second, queued once per learner and deadline.
    rows = outbox(hub, "SELECT count(*) FROM mail_outbox WHERE kind='deadline' AND username='noah'")
    assert rows == [(1,)]


def test_member_without_an_address_adds_one_on_the_settings_page(
    hub: HubProcess, smtp: SmtpServer
) -> None:
    # The demo accounts were seeded before any address existed.
    b = Browser(hub)
    try:
        sign_in_to_service(b, "demo-learner", DEMO_PASSWORD)
        page = b.client.get(SERVICE + "email")
        assert "has no email address" in page.text and 'id="learnhub-address-form"' in page.text
        bad = b.client.post(
            SERVICE + "email/address", data={"_xsrf": xsrf_of(page), "address": "nope"}
        )
        assert bad.status_code == 400 and "is not an email address" in bad.text
        sent = b.client.post(
            SERVICE + "email/address",
            data={"_xsrf": xsrf_of(page), "address": address("demo-learner")},
        )
        assert 'id="learnhub-email-sent"' in sent.text and 'data-verified="no"' in sent.text
        mail = smtp.inbox.wait_for(address("demo-learner"), subject("Confirm your email"))
        assert 'data-outcome="verified"' in b.client.get(links_in(mail)[0]).text
        assert 'data-verified="yes"' in b.client.get(SERVICE + "email").text
    finally:
        b.close()


# -- SMTP down --------------------------------------------------------------------------------


def down_row(hub: HubProcess) -> tuple[object, ...] | None:
    """Ola's outbox row of the announcement sent while the SMTP server is down."""
    rows = outbox(
        hub,
        "SELECT state, attempts, last_error FROM mail_outbox "
        "WHERE username='ola' AND params LIKE ?",
        "%mail server was down%",
    )
    return rows[0] if rows else None


def until(smtp: SmtpServer, done: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Wait until ``done()``, looking again whenever mail arrives or every 0.2 s (the
    sender's poll interval here)."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, what
        with smtp.inbox.changed:
            smtp.inbox.changed.wait(0.2)


def test_mail_is_kept_while_smtp_is_down_and_sent_when_it_is_back(
    hub: HubProcess, smtp: SmtpServer, people: dict[str, EmailMessage]
) -> None:
    smtp.stop()
    try:
        announce(hub, "Sent while the mail server was down.")

        def tried() -> bool:
            row = down_row(hub)
            return row is not None and int(str(row[1])) >= 1

        until(smtp, tried, "no failed attempt recorded")
        state, _attempts, error = down_row(hub) or ()
        assert state == "queued" and "Connect" in str(error)  # kept, with the error
        assert "mail not sent; will retry" in hub.log_tail(400)
    finally:
        smtp.start()
    smtp.inbox.wait_for(address("ola"), lambda m: "mail server was down" in text_of(m))
    # The sender records the outcome right after the server took the mail.
    until(smtp, lambda: (down_row(hub) or ("",))[0] == "sent", "not recorded as sent")


# -- time zones (issue 14, item 2) ------------------------------------------------------------


def course_deadline(hub: HubProcess) -> datetime:
    """When ps1 of the hub's copy of the course is due (the fixture moved it 12 h ahead)."""
    text = (hub.workdir / "courses" / COURSE / "course.yaml").read_text()
    match = re.search(r"id: ps1-data-model\n(?:.*\n)*?\s+due: (\S+)", text)
    assert match, text
    return datetime.fromisoformat(match.group(1).replace("Z", "+00:00"))


def test_a_member_in_shanghai_reads_deadlines_in_shanghai_time(
    hub: HubProcess, smtp: SmtpServer
) -> None:
    """The zone saved on the form is used on the course page, on the Hub's home and in the
    deadline mail; a zone that does not exist is refused and nothing is saved."""
    from hub.i18n.dates import format_datetime

    due = course_deadline(hub)
    local = due.astimezone(ZoneInfo("Asia/Shanghai"))
    shown = format_datetime(due, "zh-CN", "Asia/Shanghai")
    # Said independently of the helper: Shanghai's wall clock and the zone's Chinese name.
    assert shown == f"{local.year}年{local.month}月{local.day}日 {local:%H:%M} (中国标准时间)"
    b = Browser(hub)
    try:
        b.client.cookies.set("learnhub-lang", "zh-CN")
        assert b.signup("wei", PASSWORD).url.path.endswith("/hub/home")
        confirm = smtp.inbox.wait_for(address("wei"), lambda m: "/hub/verify-email?" in text_of(m))
        assert b.client.get(links_in(confirm)[0]).status_code == 200
        sign_in_to_service(b, "wei", PASSWORD)
        form = b.client.get(SERVICE + "time-zone")
        assert 'id="learnhub-tz-default"' in form.text and "UTC" in form.text  # nothing chosen

        bad = b.client.post(
            SERVICE + "time-zone", data={"_xsrf": xsrf_of(form), "zone": "Mars/Base"}
        )
        assert bad.status_code == 400
        assert "“Mars/Base”不是有效的时区" in bad.text and 'aria-invalid="true"' in bad.text
        assert "learnhub-tz" not in bad.headers.get("set-cookie", "")
        assert outbox(hub, "SELECT * FROM member_preferences WHERE username='wei'") == []

        saved = b.client.post(
            SERVICE + "time-zone", data={"_xsrf": xsrf_of(form), "zone": "Asia/Shanghai"}
        )
        assert saved.status_code == 200 and 'id="learnhub-tz-saved"' in saved.text
        assert outbox(hub, "SELECT time_zone FROM member_preferences WHERE username='wei'") == [
            ("Asia/Shanghai",)
        ]
        # The course page and the Hub's home, in Shanghai time.
        page = b.client.get(SERVICE + f"courses/{COURSE}")
        assert f'<time datetime="{due.isoformat()}">' in page.text
        assert f"{shown}</time>" in page.text
        granted = run_learnhub(hub, "grant", "wei", COURSE, timeout=120)
        assert granted.returncode == 0, granted.stderr
        home = b.client.get("hub/home")
        assert f'<time datetime="{due.isoformat()}">{shown}</time>' in home.text, home.text
        # Another browser of the same member (no cookie): the saved zone still applies.
        other = Browser(hub)
        try:
            other.client.cookies.set("learnhub-lang", "zh-CN")
            assert other.login("wei", PASSWORD).status_code == 200
            assert shown in other.client.get("hub/home").text
        finally:
            other.close()
    finally:
        b.close()
    # The reminder (queued once the course was granted) is worded in the member's zone.
    mail = smtp.inbox.wait_for(address("wei"), lambda m: "截止" in str(m["Subject"]))
    assert shown in text_of(mail)


def test_a_visitor_chooses_a_zone_for_this_browser(hub: HubProcess) -> None:
    """A visitor's zone is theirs: another site's form cannot choose it for them (403 in their
    language, nothing set); the form itself works without script (its hidden token)."""
    due = course_deadline(hub)
    with httpx.Client(base_url=hub.url, follow_redirects=True, timeout=60) as client:
        utc = client.get(SERVICE + f"courses/{COURSE}")
        in_utc = f"{due.astimezone(UTC):%-I:%M}\u202f{due.astimezone(UTC):%p} UTC"
        assert in_utc in utc.text
        # Another site's auto-submitting form, in this visitor's browser: no token.
        forged = client.post(
            SERVICE + "time-zone",
            data={"zone": "Pacific/Kiritimati"},
            headers={
                "Origin": "https://elsewhere.example",
                "Sec-Fetch-Site": "cross-site",
                "Sec-Fetch-Mode": "navigate",
                "Accept-Language": "zh-CN",
            },
        )
        assert forged.status_code == 403
        assert '<html lang="zh-CN">' in forged.text and "无法接受此表单" in forged.text
        assert "未作任何更改" in forged.text and "Traceback" not in forged.text
        assert "learnhub-tz" not in forged.headers.get("set-cookie", "")
        assert "learnhub-tz" not in client.cookies
        again = client.get(SERVICE + f"courses/{COURSE}")
        assert in_utc in again.text and "Kiritimati" not in again.text
        # The form as a browser without script sends it: the hidden token, the cookie with it.
        form = client.get(SERVICE + "time-zone")
        chosen = client.post(
            SERVICE + "time-zone", data={"_xsrf": xsrf_of(form), "zone": "America/New_York"}
        )
        assert chosen.status_code == 200 and 'id="learnhub-tz-saved"' in chosen.text
        assert "learnhub-tz=" in chosen.headers.get("set-cookie", "")
        local = due.astimezone(ZoneInfo("America/New_York"))
        page = client.get(SERVICE + f"courses/{COURSE}")
        assert f"{local:%-I:%M}\u202f{local:%p} {local:%Z}" in page.text  # EST or EDT
