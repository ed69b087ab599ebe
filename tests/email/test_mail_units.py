"""Mail parts without a hub: signed links, settings checks, wording, addresses, the sender's
retries against a real SMTP server on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import Mock

import pytest
import sqlalchemy as sa

from harness.hub import let_service_user_through
from hub.courses import Catalog
from hub.errors import SettingsError
from hub.mail import members, tokens
from hub.mail.compose import compose
from hub.mail.hub_handlers import queue_verification
from hub.mail.outbox import enqueue
from hub.mail.sender import MailSender
from hub.privilege import prepare_data_dir
from hub.settings import Settings, load_settings
from hub.store import Database, OutboxMessage, upgrade, utcnow
from hub.store.hub_side import ServiceDatabaseRefused, hub_database, probe, unavailable_reason
from hub.upgrade import call_as
from tests.email.conftest import SmtpServer, html_of
from tests.harness import ROOT

SECRET = "k" * 40


def test_tokens_refuse_tampering_other_purposes_and_age() -> None:
    token = tokens.sign(SECRET, "verify", {"u": "mia", "a": "mia@example.org"}, now=1000)
    assert tokens.verify(SECRET, "verify", token, max_age_seconds=60, now=1030)["u"] == "mia"
    _payload, mac = token.split(".")
    forged = tokens.sign("another key", "verify", {"u": "eve", "a": "eve@example.org"}, now=1000)
    refused = [
        (forged.split(".")[0] + "." + mac, "verify", 60),  # someone else's payload, mia's MAC
        (token, "reset", 60),  # a verification link is not a reset link
        (token[:-2], "verify", 60),
        ("garbage", "verify", 60),
    ]
    for candidate, purpose, age in refused:
        with pytest.raises(tokens.TokenRefused) as caught:
            tokens.verify(SECRET, purpose, candidate, max_age_seconds=age, now=1030)  # type: ignore[arg-type]
        assert caught.value.reason == "invalid"
    with pytest.raises(tokens.TokenRefused) as caught:
        tokens.verify(SECRET, "verify", token, max_age_seconds=60, now=1061)
    assert caught.value.reason == "expired"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "learnhub.yaml"
    path.write_text(text)
    return path


def test_email_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="from_address: required"):
        load_settings(write(tmp_path, "email: {enabled: true}\n"), {})
    with pytest.raises(SettingsError, match="not a mail address"):
        load_settings(write(tmp_path, "email: {from_address: 'nobody'}\n"), {})
    with_user = "email: {enabled: true, from_address: a@b.org, smtp: {username: u}}\n"
    with pytest.raises(SettingsError, match="LEARNHUB_SMTP_PASSWORD: required"):
        load_settings(write(tmp_path, with_user), {})
    assert load_settings(write(tmp_path, with_user), {"LEARNHUB_SMTP_PASSWORD": "pw"}).email.enabled


def test_production_refuses_unsigned_links_and_clear_text_smtp(tmp_path: Path) -> None:
    text = (
        "mode: production\nemail: {enabled: true, from_address: a@b.org, "
        "smtp: {host: smtp.example.org, security: none}}\n"
    )
    with pytest.raises(SettingsError) as caught:
        load_settings(write(tmp_path, text), {}, process="service")
    assert "LEARNHUB_EMAIL_SECRET: must be set" in str(caught.value)
    assert "email.smtp.security: `none` sends mail" in str(caught.value)


def test_mail_words_escape_what_members_wrote() -> None:
    mail = compose(
        "answer",
        "zh-CN",
        name="ola",
        action_url="http://localhost:8000/x?a=1&b=2",
        values={"course": "C", "title": "<script>alert(1)</script>", "author": "noah"},
    )
    # The subject is a header: plain text, in the member's language.
    assert mail.subject.startswith("您的问题有了新回答")
    assert mail.subject.endswith("<script>alert(1)</script>")
    assert "<script>" not in mail.html and "&lt;script&gt;" in mail.html
    assert 'href="http://localhost:8000/x?a=1&amp;b=2"' in mail.html
    assert "http://localhost:8000/x?a=1&b=2" in mail.text


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'learnhub.sqlite'}"
    upgrade(url)
    database = Database(url)
    try:
        yield database
    finally:
        database.dispose()


def test_an_address_counts_only_once_verified(db: Database) -> None:
    members.record_address(db, "mia", "mia@Example.ORG", "en")
    assert members.username_for(db, "mia@example.org") is None  # no reset to an unverified one
    assert not members.mark_verified(db, "mia", "other@example.org")
    assert members.mark_verified(db, "mia", "mia@example.org")
    assert members.username_for(db, "mia@EXAMPLE.org") == "mia"


def queue_reset_mail(db: Database, smtp: SmtpServer, **email: object) -> MailSender:
    """A password-reset mail for mia queued, and a sender for ``smtp`` (loopback, clear text)
    with these ``email`` settings."""
    settings = Settings.model_validate(
        {
            "email": {
                "enabled": True,
                "from_address": "noreply@learnhub.test",
                "smtp": {"host": "127.0.0.1", "port": smtp.port, "security": "none"},
                "give_up_hours": 1,
                **email,
            }
        }
    )
    with db.transaction() as session:
        enqueue(
            session,
            kind="reset",
            recipient="mia@example.org",
            username=None,
            params={"token": "t", "minutes": 60, "lang": "en"},
        )
    return MailSender(settings, db, Catalog.load(ROOT / "courses"))


def test_sender_keeps_mail_while_smtp_is_down_and_backs_off(db: Database) -> None:
    smtp = SmtpServer()  # not started: nothing listens on its port
    sender = queue_reset_mail(db, smtp, retry_seconds=30)

    def row() -> OutboxMessage:
        with db.transaction() as session:
            return session.scalars(sa.select(OutboxMessage)).one()

    assert asyncio.run(sender.run_once()) == 0
    first = row()
    assert (first.state, first.attempts) == ("queued", 1) and first.last_error
    waited = first.next_attempt_at - utcnow()
    assert timedelta(seconds=25) < waited <= timedelta(seconds=30)
    assert asyncio.run(sender.run_once()) == 0 and row().attempts == 1  # not due yet
    with db.transaction() as session:  # 30 s later
        session.execute(sa.update(OutboxMessage).values(next_attempt_at=utcnow()))
    asyncio.run(sender.run_once())
    second = row()
    assert second.attempts == 2
    assert timedelta(seconds=55) < second.next_attempt_at - utcnow() <= timedelta(seconds=60)
    smtp.start()
    try:
        with db.transaction() as session:
            session.execute(sa.update(OutboxMessage).values(next_attempt_at=utcnow()))
        assert asyncio.run(sender.run_once()) == 1
        assert row().state == "sent"
        (mail,) = smtp.inbox.to("mia@example.org")
        assert mail["Subject"] == "Reset your LearnHub password"
        assert "reset-password?token=t" in html_of(mail)
    finally:
        smtp.stop()


def test_sender_gives_up_after_the_window_but_keeps_the_row(db: Database) -> None:
    sender = queue_reset_mail(db, SmtpServer())
    with db.transaction() as session:  # queued two hours ago, with one hour to deliver
        session.execute(sa.update(OutboxMessage).values(created_at=utcnow() - timedelta(hours=2)))
    asyncio.run(sender.run_once())
    with db.transaction() as session:
        state, params = session.execute(sa.select(OutboxMessage.state, OutboxMessage.params)).one()
    assert state == "failed" and json.loads(params)["token"] == "t"
    assert sender.failed._value.get() == 1


def test_feedback_released_is_told_the_same_way_from_a_job_and_the_command_line(
    tmp_path: Path, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`GradingCourse.feedback` is the one path: the worker's job and `learnhub grader
    feedback` both call it, and it queues the notice (nbgrader's own steps stubbed out)."""
    import grader.course
    from grader.course import GradingCourse
    from grader.worker import run_job
    from hub.grading_jobs import JobStore, check_request, course_jobs
    from hub.grading_jobs import enqueue as enqueue_job
    from hub.i18n import translator
    from hub.service.grading import display_job

    course_id, assignment = "python-foundations", "ps1-data-model"
    config = tmp_path / "learnhub.yaml"
    config.write_text(
        f"courses_dir: {ROOT / 'courses'}\nhub:\n  data_dir: {tmp_path / 'var'}\n"
        f"database:\n  learnhub_url: {db.url}\n"
    )
    settings = load_settings(config, {})
    catalog = Catalog.load(settings.courses_dir)
    entry = catalog.get(course_id)
    assert entry is not None

    def nothing(*_args: object, **_kwargs: object) -> None:
        return None

    for step in ("_require", "prepare", "_check", "publish", "record_returned_grades"):
        monkeypatch.setattr(GradingCourse, step, nothing)
    nbgrader = SimpleNamespace(generate_feedback=nothing, release_feedback=nothing)
    monkeypatch.setattr(GradingCourse, "_api", lambda _self: nbgrader)
    monkeypatch.setattr(grader.course, "_students_with", lambda *_a: ["mia", "noah"])
    course = GradingCourse.for_course(settings, entry)
    members.record_address(db, "mia", "mia@example.org", "en")
    assert members.mark_verified(db, "mia", "mia@example.org")  # noah gave no address

    def feedback_rows() -> list[tuple[str | None, str]]:
        with db.transaction() as session:
            query = sa.select(OutboxMessage.username, OutboxMessage.params)
            return list(session.execute(query.where(OutboxMessage.kind == "feedback")).tuples())

    # The dashboard's job, run twice (its worker died after releasing): mia is told once.
    enqueue_job(db, check_request(catalog, course_id, "feedback", assignment, {}), "ted")
    rows = JobStore(db)
    claimed = rows.claim("host:1")
    assert claimed is not None
    for _attempt in range(2):
        done = run_job(settings, rows, claimed, token="t", course_factory=lambda *_a, **_k: course)
        assert done == "done"
    assert [name for name, _params in feedback_rows()] == ["mia"]
    # The job keeps the count the dashboard shows, in either language, and no list of names.
    (job,) = course_jobs(db, course_id)
    assert job["progress"]["summary"] == {"key": "job_feedback", "count": 2}
    shown = [display_job(job, translator(lang), "/")["summary"] for lang in ("en", "zh-CN")]
    assert shown == ["Feedback released to 2 learners.", "已向 2 名学员发布反馈。"]
    # The command line releases again: a new release, a new notice.
    assert course.feedback(assignment) == ["mia", "noah"]
    told = feedback_rows()
    assert [name for name, _ in told] == ["mia", "mia"]
    assert json.loads(told[1][1]) == {"course": course_id, "assignment": assignment}


def test_the_hubs_root_writes_leave_the_database_to_the_service(tmp_path: Path) -> None:
    """The Hub (root) queues sign-up and reset mail in the service's SQLite database. Root being
    the first to open it must not leave a root-owned ``-wal``/``-shm`` the service (its own
    user) then cannot write: SQLite hands the files a root process creates to the database
    file's owner, and the Hub creates that file for the service before anything opens it."""
    assert os.geteuid() == 0, "the test command runs as root, so the Hub does"
    config = tmp_path / "learnhub.yaml"
    config.write_text(f"hub:\n  data_dir: {tmp_path / 'var'}\n  hub_ip: 127.0.0.1\n")
    settings = load_settings(config, {})
    let_service_user_through(tmp_path)
    account = prepare_data_dir(settings)
    assert account is not None
    url = settings.learnhub_db_url
    call_as(account, lambda: upgrade(url) or "migrated")  # `learnhub upgrade` does this
    service_dir = settings.service_dir
    assert sorted(p.name for p in service_dir.iterdir()) == ["learnhub.sqlite"]

    hub_db = hub_database(url, account.uid)  # what the authenticator opens, as root, first
    try:
        auth = SimpleNamespace(
            learnhub_db=lambda: hub_db, email_secret=SECRET, email_verify_hours=48
        )
        queue_verification(auth, "mia", "mia@example.org", "en")
        files = {p.name: p.stat() for p in service_dir.iterdir()}
        assert set(files) == {"learnhub.sqlite", "learnhub.sqlite-wal", "learnhub.sqlite-shm"}
        assert {(f.st_uid, stat.S_IMODE(f.st_mode)) for f in files.values()} == {
            (account.uid, 0o600)
        }

        def send() -> str:  # the service's sender marks the row sent while the Hub has it open
            service_db = Database(url)
            with service_db.transaction() as session:
                session.execute(sa.update(OutboxMessage).values(state="sent"))
            service_db.dispose()
            return "sent"

        assert call_as(account, send) == "sent"
    finally:
        hub_db.dispose()
    with hub_db.transaction() as session:
        assert session.scalars(sa.select(OutboxMessage.state)).all() == ["sent"]
    hub_db.dispose()


def test_the_hub_creates_nothing_through_a_link_the_service_plants(tmp_path: Path) -> None:
    """The service's account owns ``service/``, so it can put a symbolic link where its SQLite
    file was. SQLite follows a link for the main database file and would create the target
    (root-owned, wherever the link points) for the Hub, which is root. The Hub's two opens,
    the member home page's reads and the queueing of a verification mail, must refuse the link
    and create or change nothing at either target: a missing path in a root-only folder, an
    existing empty root-owned file."""
    from jupyterhub import orm
    from traitlets.config import Config

    from hub.auth import LearnHubNativeAuthenticator
    from hub.course_scaffold import scaffold_course
    from hub.home import home_courses
    from hub.hubconfig import apply_email_auth

    assert os.geteuid() == 0, "the test command runs as root, so the Hub does"
    config = tmp_path / "learnhub.yaml"
    (tmp_path / "courses").mkdir()
    scaffold_course(tmp_path / "courses", "intro-python")  # one course: a cheap catalog
    config.write_text(
        f"courses_dir: {tmp_path / 'courses'}\n"
        f"hub:\n  data_dir: {tmp_path / 'var'}\n  hub_ip: 127.0.0.1\n"
        "email: {enabled: true, from_address: noreply@learnhub.test}\n"
    )
    settings = load_settings(config, {})
    let_service_user_through(tmp_path)
    account = prepare_data_dir(settings)
    assert account is not None
    call_as(account, lambda: upgrade(settings.learnhub_db_url) or "migrated")
    database = settings.service_dir / "learnhub.sqlite"
    vault = tmp_path / "root-only"
    vault.mkdir(mode=0o700)
    missing, empty = vault / "planted.sqlite", vault / "existing"
    empty.touch(mode=0o600)
    before = empty.stat()

    c = Config()
    apply_email_auth(c, settings)  # the Hub's wiring of the authenticator's database
    hub_db = orm.new_session_factory("sqlite://")()  # the Hub's own database, in memory
    auth = LearnHubNativeAuthenticator(config=c, db=hub_db)
    home_page = home_courses(settings)
    mia = SimpleNamespace(name="mia", groups=[], admin=False)
    logged: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = logged.append  # type: ignore[method-assign]
    logging.getLogger("learnhub.store").addHandler(handler)
    for target in (missing, empty):

        def plant(target: Path = target) -> str:  # what a compromised service can do
            link = settings.service_dir / "planted"
            link.unlink(missing_ok=True)
            link.symlink_to(target)
            link.replace(database)
            return "planted"

        assert call_as(account, plant) == "planted"
        logged.clear()
        page = home_page(mia)
        with pytest.raises(Exception, match="symbolic link"):
            queue_verification(auth, "mia", "mia@example.org", "en")
        assert not missing.exists()
        after = empty.stat()
        assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
        assert sorted(p.name for p in vault.iterdir()) == ["existing"]
        # The page renders, without the database's notes, and says so in the member's words.
        assert page["error"] == "records_unavailable" and page["others"]
        refusals = [r for r in logged if r.getMessage() == "learnhub database refused"]
        assert refusals and {getattr(r, "path", None) for r in refusals} == {str(database)}
        assert all("symbolic link" in getattr(r, "reason", "") for r in refusals)
        assert all("restore the database" in getattr(r, "remedy", "") for r in refusals)
    logging.getLogger("learnhub.store").removeHandler(handler)


def test_the_hubs_pooled_connections_are_checked_again(tmp_path: Path) -> None:
    """The Hub's check runs for every use, not only for the first connection: a file refused
    after the Hub has used the database is refused at once (the pool kept a connection, which
    skipped the check), and a file replaced by another is the one then used (the pooled
    connection would have written to the replaced file). The reason logged is the check's,
    never a statement's parameters."""
    path = tmp_path / "learnhub.sqlite"
    upgrade(f"sqlite:///{path}")
    hub_db = hub_database(f"sqlite:///{path}", os.geteuid())
    try:
        assert probe(hub_db) is None  # the pool now holds a checked connection
        with hub_db.transaction() as session:
            enqueue(session, kind="verify", recipient="a@x.org", username="a", params={})
        me, stranger = os.geteuid(), os.geteuid() + 4242
        os.chown(path, stranger, -1)
        refused = probe(hub_db)
        assert isinstance(refused, ServiceDatabaseRefused)
        assert unavailable_reason(refused) == (
            f"refused: belongs to uid {stranger}, not to the service's uid {me}"
        )
        with pytest.raises(ServiceDatabaseRefused), hub_db.transaction() as session:
            session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage))
        os.chown(path, me, -1)
        assert probe(hub_db) is None
        # Another database put in its place (a restore, say): the Hub reads the new one.
        other = tmp_path / "other.sqlite"
        upgrade(f"sqlite:///{other}")
        other.replace(path)
        with hub_db.transaction() as session:
            assert session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 0
        # Locked past the busy timeout, or gone: an OperationalError, reported by its reason.
        assert unavailable_reason(ValueError("a bug")) is None
        locked = sa.exc.OperationalError("INSERT ...", {"token": "t0ken"}, Exception("locked"))
        assert unavailable_reason(locked) == "unreachable: locked"
    finally:
        hub_db.dispose()


async def test_the_reset_look_up_uses_the_hubs_session_only_on_the_event_loop(
    tmp_path: Path, db: Database
) -> None:
    """ "Forgot password?" looks the account up after its answer: the Hub's ORM session
    (JupyterHub's, which is not thread-safe and belongs to the event loop's thread) is used on
    that thread only, while LearnHub's database work runs in a worker thread; the link is still
    queued for a verified address and nothing for another. Every statement the Hub's session
    runs is recorded with the thread that ran it."""
    import threading

    from jupyterhub import orm
    from tornado.httputil import HTTPServerRequest
    from tornado.web import Application
    from traitlets.config import Config

    from hub.auth import LearnHubNativeAuthenticator
    from hub.mail.hub_handlers import ForgotPasswordHandler

    members.record_address(db, "mia", "mia@example.org", "en")
    assert members.mark_verified(db, "mia", "mia@example.org")
    c = Config()
    native = c.LearnHubNativeAuthenticator
    native.email_enabled = True
    native.learnhub_db_url = db.url
    native.learnhub_db_owner = os.geteuid()
    native.email_secret = "test-email-links"
    hub_session = orm.new_session_factory("sqlite://")()  # the Hub's own database, in memory
    auth = LearnHubNativeAuthenticator(config=c, db=hub_session)
    assert auth.create_user("mia", "correct-horse-battery") is not None
    threads: list[str] = []
    sa.event.listen(
        hub_session,
        "do_orm_execute",
        lambda _state: threads.append(threading.current_thread().name),
    )
    # The handler of one POST, as the Hub makes it (its settings carry the authenticator).
    connection = Mock()
    connection.context.remote_ip = "127.0.0.1"
    request = HTTPServerRequest("POST", "/hub/forgot-password", connection=connection)
    hub = SimpleNamespace(base_url="/hub/")
    handler = ForgotPasswordHandler(
        Application(authenticator=auth, hub=hub, db=hub_session), request
    )
    for address in ("mia@example.org", "nobody@example.org"):
        await handler._send_link(address, "en")
    assert threads and set(threads) == {threading.current_thread().name}, threads
    with db.transaction() as session:
        queued = session.execute(sa.select(OutboxMessage.kind, OutboxMessage.username)).all()
    assert queued == [("reset", "mia")]
    auth.learnhub_db().dispose()
