"""Q&A in Markdown, search, reports and moderation, on SQLite and PostgreSQL.

The data rules (hub/qa.py) against both databases, the plain-text migration (0014) on rows
written before it, and who may report, hide, delete and lock over real HTTP through the
service app (who is signed in comes from test headers, as in test_service_edges.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa

from harness.stripe_standin import StripeStandIn
from hub import qa
from hub.access.hub_groups import make_access_sync
from hub.courses import Catalog
from hub.service.app import make_app
from hub.service.context import build_context
from hub.settings import Settings
from hub.store import Database, upgrade
from hub.store import repository as repo
from hub.store.usage_models import ModerationAction
from tests.billing.conftest import PREFIX, FakeHub, start_app
from tests.billing.test_service_edges import Edge, hub_user_from_headers  # noqa: F401

COURSE = "python-101"
OTHER = "data-201"
TEACHER = {"X_Test_Groups": f"instructors-{COURSE}"}
OTHER_TEACHER = {"X_Test_Groups": f"instructors-{OTHER}"}
ADMIN = {"X_Test_Admin": "1"}


# -- data rules ----------------------------------------------------------------------------------


def test_posts_are_stored_as_markdown_and_rendered(db: Database) -> None:
    question_id = qa.ask(db, COURSE, "ann", "Sets?", "Use `__hash__`:\n\n```python\nx = 1\n```")
    qa.answer(db, COURSE, question_id, "bob", "<script>alert(1)</script> **yes**")
    shown = qa.question(db, COURSE, question_id)
    assert shown.body.startswith("Use `__hash__`")  # the source, for editing
    assert "<code>__hash__</code>" in shown.body_html and 'class="tok-n"' in shown.body_html
    assert shown.answers[0].body_html == (
        "<p>&lt;script&gt;alert(1)&lt;/script&gt; <strong>yes</strong></p>"
    )


def test_search_within_a_course_is_literal_and_case_insensitive(db: Database) -> None:
    ids = {
        "percent": qa.ask(db, COURSE, "ann", "Am I 100% right?", "About grades."),
        "snake": qa.ask(db, COURSE, "ann", "snake_case names", "PEP 8 says so."),
        "body": qa.ask(db, COURSE, "ann", "Recursion", "Is the STACK limit 1000?"),
        "slash": qa.ask(db, COURSE, "ann", "Paths", "C:\\Users\\ann"),
    }
    qa.ask(db, OTHER, "ann", "Am I 100% right in data?", "Another course.")

    def found(text: str) -> set[int]:
        return {q.id for q in qa.questions(db, COURSE, search=text)}

    assert found("100%") == {ids["percent"]}
    assert found("%") == {ids["percent"]}  # not "everything"
    assert found("_") == {ids["snake"]}  # not "any one character"
    assert found("SNAKE") == {ids["snake"]}
    assert found("stack limit") == {ids["body"]}  # the text, not only the title
    assert found("\\Users") == {ids["slash"]}
    assert found("nothing like this") == set()
    assert len(qa.questions(db, COURSE, search="   ")) == 4


def test_reports_visibility_locking_and_the_log(db: Database) -> None:
    question_id = qa.ask(db, COURSE, "ann", "Buy cheap followers", "spam spam")
    assert qa.report(db, COURSE, "question", question_id, "bob", "Spam.") is True
    assert qa.report(db, COURSE, "question", question_id, "bob", "Still spam.") is False
    assert qa.report(db, COURSE, "question", question_id, "cat", "Advert.") is True
    with pytest.raises(qa.QARejected) as own:
        qa.report(db, COURSE, "question", question_id, "ann", "Me?")
    assert own.value.key == "qa_own_report"
    with pytest.raises(qa.QARejected) as empty:
        qa.report(db, COURSE, "question", question_id, "dan", "  ")
    assert empty.value.key == "qa_empty_reason"
    with pytest.raises(qa.QARejected):  # a post of another course is not there
        qa.report(db, OTHER, "question", question_id, "dan", "x")

    [item] = qa.moderation_queue(db, [COURSE])
    assert (item.kind, item.post_id, item.author) == ("question", question_id, "ann")
    assert [(r.reporter, r.reason) for r in item.reports] == [("bob", "Spam."), ("cat", "Advert.")]
    assert qa.moderation_queue(db, [OTHER]) == []

    qa.moderate(db, COURSE, "question", question_id, "ted", "hide")
    assert qa.questions(db, COURSE) == []  # members no longer see it
    assert qa.questions(db, COURSE, reader=qa.Reader("bob")) == []
    with pytest.raises(qa.QARejected) as gone:
        qa.question(db, COURSE, question_id, reader=qa.Reader("bob"))
    assert gone.value.status == 404
    [own_view] = qa.questions(db, COURSE, reader=qa.Reader("ann"))
    assert own_view.hidden  # the author sees it, marked hidden
    assert qa.question(db, COURSE, question_id, reader=qa.Reader("ted", moderator=True)).hidden
    assert qa.moderation_queue(db, [COURSE]) == []  # hiding resolves its reports

    qa.moderate(db, COURSE, "question", question_id, "ted", "show")
    qa.moderate(db, COURSE, "question", question_id, "ted", "lock")
    with pytest.raises(qa.QARejected) as locked:
        qa.answer(db, COURSE, question_id, "bob", "An answer")
    assert (locked.value.status, locked.value.key) == (403, "qa_locked")
    with pytest.raises(qa.QARejected):
        qa.moderate(db, COURSE, "answer", question_id, "ted", "lock")  # answers do not lock
    qa.moderate(db, COURSE, "question", question_id, "ted", "delete")
    for reader in (qa.Reader("ann"), qa.Reader("ted", moderator=True)):
        assert qa.questions(db, COURSE, reader=reader) == []

    log = qa.moderation_log(db, [COURSE])
    assert [(a.moderator, a.action, a.course_id, a.author) for a in log] == [
        ("ted", "delete", COURSE, "ann"),
        ("ted", "lock", COURSE, "ann"),
        ("ted", "show", COURSE, "ann"),
        ("ted", "hide", COURSE, "ann"),
    ]
    with db.transaction() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(ModerationAction)) == 4


def test_a_hidden_answer_is_gone_for_members_and_loses_no_votes(db: Database) -> None:
    question_id = qa.ask(db, COURSE, "ann", "Q", "Body")
    qa.answer(db, COURSE, question_id, "bob", "Rude answer")
    [answer] = qa.question(db, COURSE, question_id).answers
    qa.vote(db, COURSE, answer.id, "cat")
    qa.accept(db, COURSE, answer.id, "ann", instructor=False)
    qa.moderate(db, COURSE, "answer", answer.id, "ted", "hide")
    seen = qa.question(db, COURSE, question_id, reader=qa.Reader("cat"))
    assert seen.answers == [] and not seen.accepted
    [by_author] = qa.question(db, COURSE, question_id, reader=qa.Reader("bob")).answers
    assert by_author.hidden and by_author.votes == 1
    with pytest.raises(qa.QARejected):
        qa.vote(db, COURSE, answer.id, "dan")  # nobody votes for what they cannot see


def test_authors_edit_their_own_posts_until_a_moderator_steps_in(db: Database) -> None:
    question_id = qa.ask(db, COURSE, "ann", "Sets?", "Why do sets break?")
    qa.answer(db, COURSE, question_id, "bob", "Define `__hash__`.")
    [answer] = qa.question(db, COURSE, question_id).answers
    assert answer.edited_at is None
    assert qa.report(db, COURSE, "question", question_id, "cat", "Rude title.") is True

    # The author edits: rendered again (and sanitised), marked edited, the old source kept.
    qa.edit(db, COURSE, "question", question_id, "ann", "Why? <script>x()</script>", "Sets")
    qa.edit(db, COURSE, "answer", answer.id, "bob", "Define `__hash__` **and** `__eq__`.")
    shown = qa.question(db, COURSE, question_id)
    assert (shown.title, shown.body) == ("Sets", "Why? <script>x()</script>")
    assert shown.body_html == "<p>Why? &lt;script&gt;x()&lt;/script&gt;</p>"
    assert shown.edited_at is not None and shown.answers[0].edited_at is not None
    assert "<strong>and</strong>" in shown.answers[0].body_html
    source = qa.editable(db, COURSE, "answer", answer.id, "bob")
    assert (source.body, source.question_id) == ("Define `__hash__` **and** `__eq__`.", question_id)
    # Saving the same text again is no new version.
    qa.edit(db, COURSE, "question", question_id, "ann", "Why? <script>x()</script>", "Sets")
    # The moderator reads what was reported, not only what it says now.
    [item] = qa.moderation_queue(db, [COURSE])
    assert [(e.editor, e.previous_title, e.previous_body) for e in item.edits] == [
        ("ann", "Sets?", "Why do sets break?")
    ]

    def refused(kind: str, post_id: int, editor: str) -> qa.QARejected:
        with pytest.raises(qa.QARejected) as caught:
            qa.edit(db, COURSE, kind, post_id, editor, "Changed", "Changed")
        return caught.value

    assert (
        refused("question", question_id, "bob").key,
        refused("answer", answer.id, "ann").key,
    ) == (
        "qa_not_author",
        "qa_not_author",
    )
    assert refused("question", question_id, "ted").status == 403  # a moderator is no author
    with pytest.raises(qa.QARejected):  # the post belongs to another course
        qa.edit(db, OTHER, "question", question_id, "ann", "x", "x")
    with pytest.raises(qa.QARejected) as empty:
        qa.edit(db, COURSE, "answer", answer.id, "bob", "   ")
    assert empty.value.key == "qa_empty_answer"

    qa.moderate(db, COURSE, "question", question_id, "ted", "lock")
    assert refused("question", question_id, "ann").key == "qa_edit_locked"
    assert refused("answer", answer.id, "bob").key == "qa_edit_locked"  # its answers too
    qa.moderate(db, COURSE, "question", question_id, "ted", "unlock")
    qa.moderate(db, COURSE, "answer", answer.id, "ted", "hide")
    assert refused("answer", answer.id, "bob").key == "qa_edit_hidden"
    qa.moderate(db, COURSE, "question", question_id, "ted", "hide")
    assert refused("question", question_id, "ann").key == "qa_edit_hidden"
    qa.moderate(db, COURSE, "question", question_id, "ted", "delete")
    assert refused("question", question_id, "ann").status == 404
    with db.transaction() as session:
        assert [e.previous_body for e in qa.edit_history(session, "answer", answer.id)] == [
            "Define `__hash__`."
        ]


def test_instructors_correct_announcements_with_history(db: Database) -> None:
    from hub.reviews import ReviewRejected, announcements, edit_announcement, post_announcement

    post_announcement(db, COURSE, "ted", "Office hours *Fryday*")
    [notice] = announcements(db, COURSE)
    assert notice.edited_at is None
    assert edit_announcement(db, OTHER, notice.id, "olga", "Hijacked") is False
    assert edit_announcement(db, COURSE, notice.id, "tina", "Office hours *Friday*") is True
    [edited] = announcements(db, COURSE)
    assert edited.html == "<p>Office hours <em>Friday</em></p>" and edited.edited_at is not None
    with pytest.raises(ReviewRejected):
        edit_announcement(db, COURSE, notice.id, "tina", " ")
    with db.transaction() as session:
        [before] = qa.edit_history(session, "announcement", notice.id)
    assert (before.editor, before.previous_body) == ("tina", "Office hours *Fryday*")


def test_migration_renders_plain_text_rows_written_before(db_url: str) -> None:
    """Rows from before 0014 were plain text: they read the same after it, now as HTML."""
    upgrade(db_url, "0011_autograde_runs")
    engine = sa.create_engine(db_url)
    now = datetime.now(UTC).replace(tzinfo=None)
    old = "Why is __eq__ not enough?\n<b>sets</b> break:\n    {1, 2}"
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO questions (course_id, author, title, body, created_at) "
                "VALUES (:c, 'ann', 'Old', :b, :t)"
            ),
            {"c": COURSE, "b": old, "t": now},
        )
        conn.execute(
            sa.text(
                "INSERT INTO announcements (course_id, author, text, posted_at) "
                "VALUES (:c, 'ted', 'Office hours *Friday*', :t)"
            ),
            {"c": COURSE, "t": now},
        )
    engine.dispose()
    upgrade(db_url)
    db = Database(db_url)
    try:
        [question] = qa.questions(db, COURSE)
        assert question.body_html == (
            "<p>Why is __eq__ not enough?<br>\n&lt;b&gt;sets&lt;/b&gt; break:<br>\n"
            "&nbsp;&nbsp;&nbsp;&nbsp;{1, 2}</p>"
        )
        assert question.status == "visible" and not question.locked
        from hub.reviews import announcements

        [notice] = announcements(db, COURSE)
        assert notice.html == "<p>Office hours *Friday*</p>"
    finally:
        db.dispose()


# -- who may do what, over HTTP ------------------------------------------------------------------


@pytest.fixture
async def service(
    settings: Settings,
    catalog: Catalog,
    db: Database,
    standin: StripeStandIn,
    fake_hub: FakeHub,
    hub_user_from_headers: None,  # noqa: F811
) -> AsyncIterator[Edge]:
    """The service app with limits high enough for many writes by one member."""
    data = settings.model_dump() | {"secrets": settings.secrets.model_dump()}
    data["limits"] = {"window_seconds": 3600, "qa": 1000, "reviews": 1000}
    configured = Settings.model_validate(data)
    sync = make_access_sync(db, catalog, configured, fake_hub)
    ctx = build_context(configured, catalog, db, standin.client(), sync, prefix=PREFIX)
    server, url = await start_app(make_app(ctx))
    async with httpx.AsyncClient(timeout=30) as http:
        yield Edge(url, ctx, http)
    server.stop()
    await server.close_all_connections()
    await ctx.billing.aclose()


async def ask(service: Edge, user: str, title: str, body: str) -> str:
    asked = await service.post(f"courses/{COURSE}/questions", user, {"title": title, "body": body})
    assert asked.status_code == 303, asked.text
    return str(asked.headers["Location"]).rsplit("/", 1)[1]


async def test_moderation_is_for_this_courses_instructors_and_admins(service: Edge) -> None:
    for user in ("alice", "bob", "ivan"):
        service.grant(user, COURSE)
    # ivan teaches the other course and also learns this one: a member here, no moderator.
    with service.ctx.db.transaction() as session:
        repo.set_manual_access(session, "ivan", OTHER, active=True, reason="test")
    question = await ask(service, "alice", "Cheap essays", "Visit my shop")
    url = f"courses/{COURSE}/questions/{question}"

    refused = {
        "member": await service.post(url + "/hide", "bob"),
        "other course's instructor": await service.post(url + "/hide", "olga", **OTHER_TEACHER),
        "other course's instructor who learns here": await service.post(
            url + "/delete", "ivan", **OTHER_TEACHER
        ),
        "learner without access": await service.post(url + "/lock", "carol"),
        "the author": await service.post(url + "/hide", "alice"),
    }
    for who, response in refused.items():
        assert response.status_code == 403, (who, response.text)
    assert "Only the instructors of this course" in refused["member"].text
    page = await service.get(url, "bob")
    assert page.status_code == 200 and 'data-hidden="true"' not in page.text

    # The course's instructor hides it: members get 404, the author sees it marked hidden.
    hidden = await service.post(url + "/hide", "ted", **TEACHER)
    assert hidden.status_code == 303, hidden.text
    assert (await service.get(url, "bob")).status_code == 404
    listing = await service.get(f"courses/{COURSE}/questions", "bob")
    assert "Cheap essays" not in listing.text
    own = await service.get(url, "alice")
    assert own.status_code == 200 and "A moderator hid this post" in own.text
    # An admin (no course group) moderates too; every action is in the log.
    assert (await service.post(url + "/show", "root", **ADMIN)).status_code == 303
    assert (await service.post(url + "/lock", "ted", **TEACHER)).status_code == 303
    locked = await service.post(url, "bob", {"body": "Late answer"})
    assert locked.status_code == 403 and "locked" in locked.text
    log = qa.moderation_log(service.ctx.db, [COURSE])
    assert [(a.moderator, a.action) for a in log] == [
        ("ted", "lock"),
        ("root", "show"),
        ("ted", "hide"),
    ]


async def test_reporting_needs_access_once_per_member_and_reaches_the_queue(
    service: Edge,
) -> None:
    for user in ("alice", "bob"):
        service.grant(user, COURSE)
    question = await ask(service, "alice", "Is this allowed?", "Full solution of PS1: ...")
    report = f"courses/{COURSE}/questions/{question}/report"
    page = f"courses/{COURSE}/questions/{question}"

    outsider_read = await service.get(page, "carol")
    outsider_report = await service.post(report, "carol", {"reason": "spoiler"})
    assert outsider_read.status_code == 403 and outsider_report.status_code == 403
    assert "for the members who have it" in outsider_report.text
    assert (await service.post(report, None, {"reason": "x"})).status_code in (302, 403)

    first = await service.post(report, "bob", {"reason": "Posts a graded solution."})
    assert first.status_code == 200 and "will review this post" in first.text
    again = await service.post(report, "bob", {"reason": "Again"})
    assert again.status_code == 200 and "already reported" in again.text
    zh = await service.post(report, "bob", {"reason": ""}, Accept_Language="zh-CN")
    assert zh.status_code == 400 and "请说明你举报这条内容的原因" in zh.text

    dashboard = await service.get(f"instructor/{COURSE}", "ted", **TEACHER)
    assert dashboard.status_code == 200
    assert "Posts a graded solution." in dashboard.text and "Again" not in dashboard.text
    admin = await service.get("admin", "root", **ADMIN)
    assert f'data-course="{COURSE}"' in admin.text and "Posts a graded solution." in admin.text
    other = await service.get(f"instructor/{OTHER}", "olga", **OTHER_TEACHER)
    assert "Posts a graded solution." not in other.text

    deleted = await service.post(
        f"courses/{COURSE}/questions/{question}/delete", "ted", {"next": "instructor"}, **TEACHER
    )
    assert deleted.status_code == 303
    assert deleted.headers["Location"] == f"{PREFIX}instructor/{COURSE}#moderation"
    assert (await service.get(page, "alice")).status_code == 404  # deleted: not even the author
    dashboard = await service.get(f"instructor/{COURSE}", "ted", **TEACHER)
    assert (
        "Posts a graded solution." not in dashboard.text and "No reported posts" in dashboard.text
    )


async def test_search_page_and_public_rules_page(service: Edge) -> None:
    service.grant("alice", COURSE)
    await ask(service, "alice", "50% of tests fail", "Why?")
    await ask(service, "alice", "Unrelated", "Other")
    found = await service.get(f"courses/{COURSE}/questions?q=50%25", "alice")
    assert "50% of tests fail" in found.text and "Unrelated" not in found.text
    assert 'href="/services/learnhub/courses/python-101/rules"' in found.text
    rules = await service.get(f"courses/{COURSE}/rules")  # no sign-in needed
    assert rules.status_code == 200 and "Be kind." in rules.text
    zh = await service.get(f"courses/{COURSE}/rules", Accept_Language="zh-CN")
    assert "友善待人" in zh.text
    css = await service.get("static/highlight.css")
    assert css.status_code == 200 and ".learnhub-code .tok-k" in css.text
    assert css.headers["X-Content-Type-Options"] == "nosniff"


async def test_who_may_edit_a_post_over_http(service: Edge) -> None:
    for user in ("alice", "bob"):
        service.grant(user, COURSE)
    question = await ask(service, "alice", "Loops", "How do I loop?")
    url = f"courses/{COURSE}/questions/{question}"
    answered = await service.post(url, "bob", {"body": "Use `for`."})
    assert answered.status_code == 303
    answer = qa.question(service.ctx.db, COURSE, int(question)).answers[0].id
    edit_question, edit_answer = f"{url}/edit", f"courses/{COURSE}/answers/{answer}/edit"

    # The author: a form with their Markdown, then the edit, marked on the page.
    page = await service.get(url, "alice")
    assert f'href="{PREFIX}{edit_question}"' in page.text
    assert f'href="{PREFIX}{edit_answer}"' not in page.text  # not alice's answer
    form = await service.get(edit_question, "alice")
    assert form.status_code == 200 and "How do I loop?</textarea>" in form.text
    saved = await service.post(
        edit_question, "alice", {"title": "Loops in Python", "body": "How do I `loop`?"}
    )
    assert saved.status_code == 303 and saved.headers["Location"] == f"{PREFIX}{url}"
    shown = await service.get(url, "bob")
    assert "Loops in Python" in shown.text and "<code>loop</code>" in shown.text
    assert 'class="text-body-secondary small learnhub-edited"' in shown.text
    zh = await service.get(url, "bob", Accept_Language="zh-CN")
    assert "已编辑" in zh.text

    # Everyone else: another member, an instructor of the course, someone without access.
    refused = {
        "member, question": await service.post(edit_question, "bob", {"title": "x", "body": "x"}),
        "member, form": await service.get(edit_question, "bob"),
        "asker, someone's answer": await service.post(edit_answer, "alice", {"body": "x"}),
        "instructor": await service.post(edit_answer, "ted", {"body": "x"}, **TEACHER),
        "no access": await service.post(edit_question, "carol", {"title": "x", "body": "x"}),
    }
    for who, response in refused.items():
        assert response.status_code == 403, (who, response.text)
    assert "Only its author can edit a post." in refused["member, question"].text
    assert (await service.post(edit_question, None, {"body": "x"})).status_code in (302, 403)

    # A lock or a hide wins over the author; what the author can no longer change is unchanged.
    assert (await service.post(url + "/lock", "ted", **TEACHER)).status_code == 303
    locked = await service.post(edit_answer, "bob", {"body": "Sneaky"})
    assert locked.status_code == 403 and "locked" in locked.text
    assert (await service.get(edit_answer, "bob")).status_code == 403
    assert "learnhub-edit-link" not in (await service.get(url, "bob")).text
    assert (await service.post(url + "/unlock", "ted", **TEACHER)).status_code == 303
    answer_url = f"courses/{COURSE}/answers/{answer}"
    assert (await service.post(answer_url + "/hide", "ted", **TEACHER)).status_code == 303
    hidden = await service.post(edit_answer, "bob", {"body": "Sneaky"})
    assert hidden.status_code == 403 and "hid this post" in hidden.text
    assert (await service.post(url + "/hide", "ted", **TEACHER)).status_code == 303
    assert (
        await service.post(edit_question, "bob", {"title": "x", "body": "x"})
    ).status_code == 404
    moderator = qa.Reader("ted", moderator=True)
    [kept] = qa.question(service.ctx.db, COURSE, int(question), reader=moderator).answers
    assert kept.body == "Use `for`." and kept.edited_at is None
    with service.ctx.db.transaction() as session:
        assert [e.previous_body for e in qa.edit_history(session, "answer", answer)] == []

    # Announcements: the course's instructors correct them; members cannot.
    announced = await service.post(
        f"instructor/{COURSE}/announce", "ted", {"text": "Quiz on Mondy"}, **TEACHER
    )
    assert announced.status_code == 303
    from hub.reviews import announcements

    [notice] = announcements(service.ctx.db, COURSE)
    edit_notice = f"instructor/{COURSE}/announcements/{notice.id}"
    assert (await service.post(edit_notice, "bob", {"text": "No quiz"})).status_code == 403
    other = await service.post(edit_notice, "olga", {"text": "No quiz"}, **OTHER_TEACHER)
    assert other.status_code == 403
    wrong_course = await service.post(
        f"instructor/{OTHER}/announcements/{notice.id}", "olga", {"text": "x"}, **OTHER_TEACHER
    )
    assert wrong_course.status_code == 404
    fixed = await service.post(edit_notice, "root", {"text": "Quiz on Monday"}, **ADMIN)
    assert fixed.status_code == 303
    course_page = await service.get(f"courses/{COURSE}", "bob")
    assert "Quiz on Monday" in course_page.text and "Mondy" not in course_page.text
    dashboard = await service.get(f"instructor/{COURSE}", "ted", **TEACHER)
    assert f'action="{PREFIX}{edit_notice}"' in dashboard.text
