"""The instructor's side of a course's assignments: release, collect, autograde, feedback, export.

Each course has an nbgrader course directory under `<data_dir>/grader/<course>/` that only the
host's user can read. nbgrader's configuration is built in memory on every command
(:meth:`GradingCourse.nbgrader_config`); the instructor's token reaches nbgrader only in memory,
never on disk. After every command the directory is copied to the instructors' copy
(`<data_dir>/formgrader/<course>/`) that their course servers mount for the formgrader; before
every command the gradebook (their manual grades) and the source files they edited in the
formgrader are taken back from it. See grader/ownership.py for how that copy is handled.

The grading source (`source/<assignment>/`) is copied from `courses/<course>/source/` when it
is missing, and afterwards only when the instructor asks (`from_course`): from then on it is
the instructors' own, edited in the formgrader. A later change of the course repository is
reported (with the way to take it) rather than applied over their edits.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.apps import NbGraderAPI
from nbgrader.converters import GenerateAssignment
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import InstantiateTests
from traitlets.config import Config

from grader.autograde import (
    GradeResult,
    autograde_submissions,
    course_config,
    find_submitted_students,
)
from grader.export import DEFAULT_EXPORTER, export_grades, gradebook_rows
from grader.gradebook import ensure_gradebook
from grader.ownership import (
    MAX_GRADEBOOK_BYTES,
    prepare_host_directory,
    publish_to_instructors,
    take_back_file,
    take_back_tree,
)
from grader.pacing import apply_deadlines, record_granted_hours
from grader.policy import grading_parallelism, sandbox_policy
from grader.preprocessors import RefuseAutotests
from grader.records import RECORDS_DIR, read_record, tree_digest, write_record
from grader.sandbox import SandboxPolicy
from hub.addresses import service_prefix
from hub.autograde_runs import record_autograde_runs
from hub.certificates import evaluate, issue_certificates
from hub.courses import Catalog, CourseEntry
from hub.errors import LearnHubError
from hub.pacing import enrolment_times
from hub.privilege import (
    ServiceAccount,
    prepare_data_dir,
    run_as_service_user,
    share_gradebook,
    share_grading_folder,
)
from hub.progress import store_grades
from hub.settings import PlanSettings, Settings
from hub.store import Database, utcnow
from hub.store.revisions import ensure_store
from learnhub_container.exchange import configure_nbgrader

log = logging.getLogger("learnhub.grader")


class GradingError(LearnHubError):
    """An nbgrader step failed; the message carries nbgrader's own explanation."""


#: Folders never copied from the course repository into the grading source.
_NOT_SOURCE = frozenset({".ipynb_checkpoints"})
#: Record of the course repository's sources as last copied (grader/records.py).
_SOURCES_RECORD = "sources.json"


@dataclass
class AutogradePlan:
    """Which collected submissions an autograde run grades, and which it leaves as graded."""

    assignment: str
    #: Learners to grade, with the digest of their collected submission.
    to_grade: dict[str, str] = field(default_factory=dict)
    #: Learners whose collected submission was graded already, unchanged since.
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GradingCourse:
    """One course's nbgrader directory, how it reaches the exchange, and its grading policy."""

    entry: CourseEntry
    #: The host's grading directory (root only, never mounted into a container).
    root: Path
    #: The instructors' copy, mounted into their course servers: hostile ground.
    instructor_copy: Path
    gradebook_url: str
    exchange_url: str
    token: str
    policy: SandboxPolicy
    #: Submissions graded at once unless a run asks for another number.
    parallel: int
    #: LearnHub's database, where autograde records each grade for the learner's home page.
    learnhub_db_url: str = ""
    #: The account the LearnHub service runs as (operator commands run as root): it owns
    #: LearnHub's database and may read, never write, the gradebook (hub/privilege.py).
    service_account: ServiceAccount | None = None
    #: The membership plans, whose subscriptions enrol learners too (self-paced deadlines).
    plans: tuple[PlanSettings, ...] = ()

    @classmethod
    def for_course(
        cls,
        settings: Settings,
        entry: CourseEntry,
        *,
        exchange_url: str = "",
        token: str = "",
        service_account: ServiceAccount | None = None,
    ) -> GradingCourse:
        """The course's grading side under the settings' grader folder.

        Without an exchange URL and token it can read and grade, but not release or collect.
        """
        return cls(
            entry=entry,
            root=settings.grader_dir / entry.course.id,
            instructor_copy=settings.formgrader_dir / entry.course.id,
            gradebook_url=settings.gradebook_url(entry.course.id),
            exchange_url=exchange_url,
            token=token,
            policy=sandbox_policy(settings, entry.course),
            parallel=grading_parallelism(settings, entry.course),
            learnhub_db_url=settings.learnhub_db_url,
            service_account=service_account,
            plans=tuple(settings.payments.plans),
        )

    @classmethod
    def for_operator(cls, settings: Settings, course_id: str, *, token: str) -> GradingCourse:
        """The course ``course_id`` of the catalog, reaching the exchange through the local
        LearnHub service with the operator's (admin) ``token``."""
        catalog = Catalog.load(settings.courses_dir)
        entry = catalog.get(course_id)
        if entry is None:
            known = ", ".join(catalog.ids()) or "none"
            raise LearnHubError(f"no such course {course_id!r} (known: {known})")
        exchange_url = (
            f"http://127.0.0.1:{settings.hub.service_port}{service_prefix(settings)}exchange/"
        )
        return cls.for_course(
            settings,
            entry,
            exchange_url=exchange_url,
            token=token,
            service_account=prepare_data_dir(settings),
        )

    @property
    def course_id(self) -> str:
        """The course id (also nbgrader's course id)."""
        return self.entry.course.id

    def nbgrader_config(self) -> Config:
        """nbgrader's configuration for this course, built in memory on every command.

        No `nbgrader_config.py` is read or written: it wires nbgrader's seams to LearnHub (the
        HTTP exchange client with the operator's token, sandboxed autograding, feedback without
        hidden tests, the late-penalty plugin) and matches `course.yaml` and the settings.
        """
        grading = self.entry.course.grading
        config = course_config(self.root, course_id=self.course_id, db_url=self.gradebook_url)
        configure_nbgrader(config, self.course_id)
        config.HTTPExchange.api_token = self.token
        config.HTTPExchange.exchange_url = self.exchange_url
        # AUTOTEST expansion runs the source notebook in a kernel on the host: refused.
        config.GenerateAssignment.preprocessors = [
            RefuseAutotests if pp is InstantiateTests else pp
            for pp in GenerateAssignment.class_traits()["preprocessors"].default()
        ]
        config.GenerateFeedback.preprocessors = [
            "nbgrader.preprocessors.GetGrades",
            "grader.feedback.StripHiddenTests",
            "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
        ]
        if grading.late_penalty_percent_per_day > 0:
            config.AssignLatePenalties.plugin_class = "grader.late.PercentPerDayLate"
            config.PercentPerDayLate.percent_per_day = grading.late_penalty_percent_per_day
            config.PercentPerDayLate.max_percent = grading.max_late_penalty_percent
        return config

    @property
    def default_gradebook_url(self) -> str:
        """nbgrader's own default: `gradebook.db` in the course root."""
        return f"sqlite:///{self.root / 'gradebook.db'}"

    def take_back_gradebook(self) -> bool:
        """Copy the gradebook of the instructors' copy (their manual grades) over the host's.

        Only a regular file is taken, through a descriptor opened without following links, and
        only when the gradebook is the default SQLite file. The instructors may have changed
        anything in it: that is their course's grading data, which they may edit (or spoil).
        """
        if self.gradebook_url != self.default_gradebook_url:
            return False
        return take_back_file(
            self.instructor_copy,
            "gradebook.db",
            self.root / "gradebook.db",
            max_bytes=MAX_GRADEBOOK_BYTES,
        )

    def publish(self) -> None:
        """Copy the host's grading directory to the instructors' copy (for the formgrader)."""
        try:
            copied = publish_to_instructors(self.root, self.instructor_copy, skip=_HOST_ONLY)
        except OSError as exc:
            raise GradingError(
                f"could not update the instructors' copy {self.instructor_copy}: {exc}; "
                "the host's grading data is intact, run the command again"
            ) from exc
        log.debug("instructor copy updated", extra={"course": self.course_id, "files": copied})

    def prepare(self, assignment: str | None = None, *, from_course: bool = False) -> None:
        """Create the host's course directory, take back what the instructors changed in their
        copy (gradebook, source files), copy missing sources from the course repository and
        create the gradebook.

        ``from_course`` replaces the grading source of ``assignment`` with the course
        repository's (edits made in the formgrader are lost).
        """
        try:
            prepare_host_directory(self.root)
        except OSError as exc:
            raise GradingError(f"{exc.filename}: {exc.strerror}") from exc
        self.take_back_gradebook()
        self.take_back_sources()
        self.copy_sources(assignment, from_course=from_course)
        ensure_gradebook(self.gradebook_url)
        self.apply_deadlines()
        self.share_gradebook()

    def apply_deadlines(self) -> None:
        """Write every assignment's due date and every learner's extension into the gradebook
        (grader/pacing.py): their own deadlines, in a self-paced course from their enrolment."""
        self_paced = self.entry.course.pacing == "self-paced"
        enrolments = self.enrolments() if self_paced else {}
        submitted = (
            {a.id: self.submitted_students(a.id) for a in self.entry.course.assignments}
            if self_paced
            else {}
        )
        with Gradebook(self.gradebook_url, self.course_id) as gb:
            apply_deadlines(
                gb,
                self.entry,
                self.root,
                enrolments=enrolments,
                submitted=submitted,
                now=utcnow(),
            )

    def enrolments(self) -> dict[str, datetime]:
        """When each learner with access enrolled (hub/pacing.py), from LearnHub's database,
        read as the service's account (root opens none of its files); empty without one."""
        if not self.learnhub_db_url:
            return {}
        # Imported here: hub.upgrade (the privilege drop) is needed by this one read only.
        from hub.upgrade import call_as

        def read() -> str:
            ensure_store(self.learnhub_db_url)
            db = Database(self.learnhub_db_url)
            try:
                with db.transaction() as session:
                    times = enrolment_times(session, self.entry, self.plans)
            finally:
                db.dispose()
            return json.dumps({user: when.isoformat() for user, when in times.items()})

        answer = json.loads(call_as(self.service_account, read))
        return {user: datetime.fromisoformat(when) for user, when in answer.items()}

    def share_gradebook(self) -> None:
        """Let the service's account read the gradebook (dashboards, the grades API) through
        the root-owned folders, without listing or writing anything of them."""
        if self.service_account is None or self.gradebook_url != self.default_gradebook_url:
            return
        gid = self.service_account.gid
        share_grading_folder(self.root.parent, gid)
        share_grading_folder(self.root, gid)
        share_gradebook(self.root / "gradebook.db", gid)

    def take_back_sources(self) -> None:
        """Take back the source files the instructors changed in the formgrader."""
        for item in self.entry.course.assignments:
            dest = self.root / "source" / item.id
            taken = take_back_tree(self.instructor_copy, ("source", item.id), dest)
            if taken:
                log.info(
                    "formgrader edits taken back",
                    extra={"course": self.course_id, "assignment": item.id, "files": len(taken)},
                )

    def copy_sources(self, assignment: str | None = None, *, from_course: bool = False) -> None:
        """Copy each assignment's source from the course repository where the grading source
        has none, and ``assignment``'s when ``from_course``.

        A course repository that changed since its last copy is reported for ``assignment``,
        and left for the instructor to take (``--from-course``) or to ignore.
        """
        record = read_record(self.root, _SOURCES_RECORD)
        changed = False
        (self.root / "source").mkdir(exist_ok=True)
        for item in self.entry.course.assignments:
            src = self.entry.source_dir / item.id
            dest = self.root / "source" / item.id
            digest = tree_digest(src, skip=_NOT_SOURCE)
            if not dest.exists() or (from_course and item.id == assignment):
                if not src.is_dir():
                    if item.id != assignment:
                        continue
                    raise GradingError(
                        f"{src} is missing: course.yaml lists {item.id!r}, put its notebooks there"
                    )
                if dest.exists():
                    shutil.rmtree(dest)
                shutil.copytree(src, dest, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
                record[item.id], changed = digest, True
                log.info(
                    "grading source copied from the course repository",
                    extra={"course": self.course_id, "assignment": item.id},
                )
            elif item.id not in record:
                # Grading directories of LearnHub before 2026-12 were re-copied every time.
                record[item.id], changed = digest, True
            elif record[item.id] != digest and item.id == assignment:
                log.warning(
                    f"{src} changed since it was copied to the grading source; the grading "
                    "source (with any formgrader edits) is used: add --from-course to replace "
                    "it with the course repository's version",
                    extra={"course": self.course_id, "assignment": item.id},
                )
        if changed:
            write_record(self.root, _SOURCES_RECORD, record)

    def _api(self, config: Config | None = None) -> NbGraderAPI:
        config = config or self.nbgrader_config()
        return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)

    def _require(self, assignment: str) -> None:
        if self.entry.course.assignment(assignment) is None:
            known = ", ".join(a.id for a in self.entry.course.assignments) or "none"
            raise GradingError(
                f"{self.course_id} has no assignment {assignment!r} in course.yaml (known: {known})"
            )

    @staticmethod
    def _check(step: str, result: dict[str, Any]) -> dict[str, Any]:
        if not result.get("success"):
            log.debug(
                "nbgrader step failed",
                extra={"step": step, "log": result.get("log", ""), "error": result.get("error")},
            )
            raise GradingError(f"{step} failed: {nbgrader_reason(result)}")
        return result

    def release(self, assignment: str, *, force: bool = False, from_course: bool = False) -> None:
        """Generate the student version (no solutions, no hidden tests) and release it.

        Releasing again needs ``force``; ``from_course``: see :meth:`prepare`.
        """
        self._require(assignment)
        self.prepare(assignment, from_course=from_course)
        config = self.nbgrader_config()
        # nbgrader's API takes `force` only from the config of the release step.
        config.ExchangeReleaseAssignment.force = force
        api = self._api(config)
        self._check("generate_assignment", api.generate_assignment(assignment, force=True))
        self._check("release_assignment", api.release_assignment(assignment))
        self.publish()
        log.info("released", extra={"course": self.course_id, "assignment": assignment})

    def collect(self, assignment: str, *, from_course: bool = False) -> list[str]:
        """Collect the latest submission of every learner; return who submitted."""
        self._require(assignment)
        self.prepare(assignment, from_course=from_course)
        self._check("collect", self._api().collect(assignment, update=True))
        self.publish()
        students = _students_with(self.root / "submitted", assignment)
        log.info(
            "collected",
            extra={"course": self.course_id, "assignment": assignment, "count": len(students)},
        )
        return students

    def submitted_students(self, assignment: str) -> list[str]:
        """Who has a collected submission of ``assignment`` (before grading it)."""
        return find_submitted_students(self.root, assignment, self.nbgrader_config())

    def plan_autograde(
        self,
        assignment: str,
        *,
        student: str | None = None,
        regrade_all: bool = False,
        from_course: bool = False,
    ) -> AutogradePlan:
        """Prepare the course and choose what :meth:`autograde` grades.

        By default, each collected submission that is new or changed since it was last
        graded (a digest of its collected files against the one recorded then, and a grade
        in the gradebook); ``regrade_all``: every collected submission; ``student``: that
        learner's, graded or not.
        """
        self._require(assignment)
        self.prepare(assignment, from_course=from_course)
        config = self.nbgrader_config()
        submitted = self.submitted_students(assignment)
        if student is not None:
            if student not in submitted:
                raise GradingError(
                    f"{student!r} has no collected submission of {self.course_id}/{assignment} "
                    f"({len(submitted)} collected): run `learnhub grader collect "
                    f"{self.course_id} {assignment}` first"
                )
            submitted = [student]
        coursedir = CourseDirectory(config=config)
        graded = read_record(self.root, _graded_record(assignment))
        plan = AutogradePlan(assignment)
        with Gradebook(self.gradebook_url, self.course_id) as gb:
            for name in submitted:
                folder = coursedir.format_path(coursedir.submitted_directory, name, assignment)
                digest = tree_digest(Path(folder))
                unchanged = graded.get(name) == digest and _has_grade(
                    gb, coursedir, assignment, name
                )
                if unchanged and student is None and not regrade_all:
                    plan.skipped.append(name)
                else:
                    plan.to_grade[name] = digest
        return plan

    def autograde(
        self,
        assignment: str,
        plan: AutogradePlan | None = None,
        *,
        parallel: int | None = None,
        progress: Callable[[GradeResult], None] | None = None,
    ) -> list[GradeResult]:
        """Autograde the submissions of ``plan`` (default: :meth:`plan_autograde`'s, which
        prepares the course) in sandboxes, several at once, and record the grades for the
        learners' home pages.

        ``parallel`` overrides the course's parallelism for this run. A submission whose
        grading failed stays to be graded by the next run.
        """
        if plan is None:
            plan = self.plan_autograde(assignment)
        if not plan.to_grade:
            self.publish()  # what preparing changed (sources, gradebook), for the formgrader
            return []
        graded = read_record(self.root, _graded_record(assignment))
        finished: list[GradeResult] = []

        def remember(result: GradeResult) -> None:
            # Recorded as each submission is graded (autograde calls this from its own thread,
            # one result at a time), so a run that dies half-way is resumed where it stopped.
            if result.outcome == "error":
                graded.pop(result.student, None)
            else:
                graded[result.student] = plan.to_grade[result.student]
            write_record(self.root, _graded_record(assignment), graded)
            finished.append(result)
            if progress is not None:
                progress(result)

        try:
            results = autograde_submissions(
                self.root,
                assignment,
                list(plan.to_grade),
                policy=self.policy,
                config=self.nbgrader_config(),
                parallel=parallel if parallel and parallel > 0 else self.parallel,
                progress=remember,
            )
        except BaseException:
            # Stopped half-way (Ctrl-C, a grading worker told to stop): the grades recorded as
            # done above reach the learners' home pages too, since a resumed run skips them.
            self.publish()
            if finished:
                self.record_grades(finished)
            raise
        self.publish()
        self.record_grades(results)
        return results

    def record_grades(self, results: list[GradeResult]) -> None:
        """Copy the scores into LearnHub's database (what the learner's home page shows), and
        record each run's outcome and duration (what the service's metrics report)."""
        if not self.learnhub_db_url:
            return

        def store() -> None:
            ensure_store(self.learnhub_db_url)
            db = Database(self.learnhub_db_url)
            try:
                store_grades(db, self.course_id, results)
                record_autograde_runs(db, self.course_id, results)
            finally:
                db.dispose()

        # LearnHub's database is the service's: root writes none of its files.
        run_as_service_user(self.service_account, store)

    def feedback(
        self, assignment: str, *, from_course: bool = False, release: str | None = None
    ) -> list[str]:
        """Generate feedback (hidden tests stripped), release it and tell each student by mail
        (:meth:`tell_feedback_released`); return the students.

        ``release`` names this release for the notice (a grading job passes its id, so a job
        run again after its worker died mails nobody twice); by default, the time now.
        """
        self._require(assignment)
        self.prepare(assignment, from_course=from_course)
        api = self._api()
        self._check("generate_feedback", api.generate_feedback(assignment, force=True))
        self._check("release_feedback", api.release_feedback(assignment))
        self.publish()
        students = _students_with(self.root / "feedback", assignment)
        log.info(
            "feedback released",
            extra={"course": self.course_id, "assignment": assignment, "count": len(students)},
        )
        self.record_returned_grades()
        self.tell_feedback_released(
            assignment, students, release=release or datetime.now(UTC).isoformat()
        )
        return students

    def tell_feedback_released(self, assignment: str, students: list[str], *, release: str) -> None:
        """Queue the "feedback released" notice for ``students`` in LearnHub's outbox (the
        service sends it): the one path for the dashboard's job and the command line."""
        if not self.learnhub_db_url or not students:
            return
        from hub.mail.notices import feedback_released

        def queue() -> None:
            ensure_store(self.learnhub_db_url)
            db = Database(self.learnhub_db_url)
            try:
                queued = feedback_released(db, self.course_id, assignment, students, release)
            finally:
                db.dispose()
            log.info(
                "feedback notices queued",
                extra={"course": self.course_id, "assignment": assignment, "count": queued},
            )

        # LearnHub's database is the service's: root writes none of its files.
        run_as_service_user(self.service_account, queue)

    def record_returned_grades(self) -> list[str]:
        """After feedback: copy the returned grades (hand grades included) to the learners'
        home pages and issue certificates to those who pass ``completion:``; return who passes.

        Feedback is when the grades are the ones learners are told, so that is when a
        certificate is earned (hub/certificates.py).
        """
        if not self.learnhub_db_url:
            return []
        rows = self.grades()
        course = self.entry.course
        results = evaluate(course, rows) if course.completion else []
        summaries = [
            SimpleNamespace(
                student=r["student"],
                assignment=r["assignment"],
                score=r["score"],
                max_score=r["max_score"],
            )
            for r in rows
        ]

        def store() -> None:
            ensure_store(self.learnhub_db_url)
            db = Database(self.learnhub_db_url)
            try:
                store_grades(db, self.course_id, summaries)
                issued = issue_certificates(db, course, results)
                if issued:
                    log.info(
                        "certificates issued",
                        extra={"course": self.course_id, "count": len(issued), "outcome": "issued"},
                    )
            finally:
                db.dispose()

        # LearnHub's database is the service's: root writes none of its files.
        run_as_service_user(self.service_account, store)
        return [r.learner for r in results if r.passed]

    def export(self, assignment: str | None = None) -> list[dict[str, Any]]:
        """:meth:`grades`, after taking back the instructors' manual grades.

        An assignment that was never released has no grades: that is an error that says to
        release it first (an empty export would look like a course nobody handed in).
        """
        if assignment is not None:
            self._require(assignment)
        try:
            prepare_host_directory(self.root)
        except OSError as exc:
            raise GradingError(f"{exc.filename}: {exc.strerror}") from exc
        self.take_back_gradebook()
        if assignment is not None and not self._generated(assignment):
            raise GradingError(
                f"{self.course_id}/{assignment} is not released yet, so it has no grades: "
                f"release it with `learnhub grader release {self.course_id} {assignment}`, "
                "then collect and autograde"
            )
        if not self._has_gradebook():
            return []
        self.share_gradebook()
        return self.grades(assignment)

    def export_text(
        self, assignment: str | None = None, *, exporter: str = DEFAULT_EXPORTER
    ) -> str:
        """The grades export (after :meth:`export`'s checks) by nbgrader's ``ExportPlugin``
        ``exporter`` (grader/export.py): ``csv`` (the default) or ``moodle``."""
        self.export(assignment)
        names = [assignment] if assignment else [a.id for a in self.entry.course.assignments]
        # No gradebook yet: the export of an empty one (its header).
        url = self.gradebook_url if self._has_gradebook() else None
        return export_grades(
            self.nbgrader_config(),
            url,
            self.course_id,
            exporter=exporter,
            assignments=names,
        )

    def _has_gradebook(self) -> bool:
        if self.gradebook_url.startswith("sqlite:///"):
            return Path(self.gradebook_url.removeprefix("sqlite:///")).is_file()
        return True

    def _generated(self, assignment: str) -> bool:
        """The gradebook knows the assignment's notebooks (written when it is released)."""
        if not self._has_gradebook():
            return False
        ensure_gradebook(self.gradebook_url)
        with Gradebook(self.gradebook_url, self.course_id) as gb:
            try:
                return bool(gb.find_assignment(assignment).notebooks)
            except MissingEntry:
                return False

    def grades(self, assignment: str | None = None) -> list[dict[str, Any]]:
        """One row per graded submission (all assignments, or one)."""
        names = [assignment] if assignment else [a.id for a in self.entry.course.assignments]
        with Gradebook(self.gradebook_url, self.course_id) as gb:
            return gradebook_rows(gb, self.course_id, names)

    def grant_extension(self, assignment: str, student: str, *, hours: float) -> None:
        """Move one learner's deadline for one assignment (0 removes the extension).

        In a self-paced course the hours count from the learner's own deadline (their
        enrolment plus ``due_after``), and are kept when that is computed again.
        """
        self._require(assignment)
        self.prepare(assignment)
        record_granted_hours(self.root, assignment, student, hours)
        self.apply_deadlines()
        log.info(
            "extension granted",
            extra={
                "course": self.course_id,
                "assignment": assignment,
                "user": student,
                "hours": hours,
            },
        )


#: Top-level entries of the host's directory that stay on the host (older LearnHub versions
#: generated an nbgrader_config.py there), and the host's own records (grader/records.py).
_HOST_ONLY = frozenset({"nbgrader_config.py", RECORDS_DIR})


def _students_with(folder: Path, assignment: str) -> list[str]:
    """Students that have `folder/<student>/<assignment>/` (nbgrader's layout), sorted."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / assignment).is_dir())


def _graded_record(assignment: str) -> str:
    return f"graded-{assignment}.json"


def _has_grade(gb: Gradebook, coursedir: CourseDirectory, assignment: str, student: str) -> bool:
    """The gradebook has a graded submission and its autograded folder is there."""
    folder = coursedir.format_path(coursedir.autograded_directory, student, assignment)
    if not Path(folder).is_dir():
        return False
    try:
        gb.find_submission(assignment, student)
    except MissingEntry:
        return False
    return True


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LOGGED = re.compile(r"^\[(?P<level>[A-Z]+)\]\s*(?P<message>.*)$")
#: nbgrader's own follow-up lines, which say nothing the other errors do not.
_BOILERPLATE = ("Please see the", "Traceback (most recent call last)")


def _exception_message(line: str) -> str:
    # "package.module.SomeError: what happened" -> "what happened"
    exception, _, message = line.strip().partition(": ")
    return message.strip() or exception.strip()


def nbgrader_reason(result: dict[str, Any]) -> str:
    """nbgrader's own reason for a failed step, on one line (its tracebacks left out).

    What it logged at ERROR or CRITICAL, with each logged traceback replaced by the message of
    its exception (at most three messages); else the message of the exception it raised.
    """
    messages: list[str] = []
    last_line_of_traceback = ""
    in_traceback = False

    def add(message: str) -> None:
        if message and not message.startswith(_BOILERPLATE) and message not in messages:
            messages.append(message)

    for raw in _ANSI.sub("", result.get("log") or "").splitlines():
        match = _LOGGED.match(raw.strip())
        if match is None:
            if in_traceback and raw.strip():
                last_line_of_traceback = raw
            continue
        if in_traceback:
            add(_exception_message(last_line_of_traceback))
        in_traceback, last_line_of_traceback = False, ""
        if match["level"] in ("ERROR", "CRITICAL"):
            if match["message"].startswith("Traceback"):
                in_traceback = True
            else:
                add(match["message"].strip())
    if in_traceback:
        add(_exception_message(last_line_of_traceback))
    if messages:
        return "; ".join(messages[:3])
    lines = (result.get("error") or "").strip().splitlines()
    return _exception_message(lines[-1]) if lines else "nbgrader gave no reason"
