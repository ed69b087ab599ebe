"""The instructor's side of a course's assignments: release, collect, autograde, feedback, export.

Each course has an nbgrader course directory under `<data_dir>/grader/<course>/` that only the
host's user can read, whose `source/` is copied from `courses/<course>/source/`. nbgrader's
configuration is built in memory on every command (:meth:`GradingCourse.nbgrader_config`); the
instructor's token reaches nbgrader only in memory, never on disk. After every command the
directory is copied to the instructors' copy (`<data_dir>/formgrader/<course>/`) that their
course servers mount for the formgrader; before every command the gradebook (their manual
grades) is taken back from it. See grader/ownership.py for how that copy is handled.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.apps import NbGraderAPI
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config

from grader.autograde import (
    GradeResult,
    autograde_submissions,
    course_config,
    find_submitted_students,
)
from grader.ownership import (
    MAX_GRADEBOOK_BYTES,
    prepare_host_directory,
    publish_to_instructors,
    take_back_file,
)
from grader.policy import grading_parallelism, sandbox_policy
from grader.sandbox import SandboxPolicy
from hub.addresses import service_prefix
from hub.courses import Catalog, CourseEntry
from hub.errors import LearnHubError
from hub.privilege import (
    ServiceAccount,
    prepare_data_dir,
    run_as_service_user,
    share_gradebook,
    share_grading_folder,
)
from hub.progress import store_grades
from hub.settings import Settings
from hub.store import Database, upgrade
from learnhub_container.exchange import configure_nbgrader

log = logging.getLogger("learnhub.grader")


class GradingError(LearnHubError):
    """An nbgrader step failed; the message carries nbgrader's own explanation."""


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

    def prepare(self) -> None:
        """Create the host's course directory, take back the instructors' gradebook and copy
        the sources."""
        try:
            prepare_host_directory(self.root)
        except OSError as exc:
            raise GradingError(f"{exc.filename}: {exc.strerror}") from exc
        self.take_back_gradebook()
        (self.root / "source").mkdir(exist_ok=True)
        for assignment in self.entry.course.assignments:
            src = self.entry.source_dir / assignment.id
            dest = self.root / "source" / assignment.id
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        with Gradebook(self.gradebook_url, self.course_id) as gb:
            for assignment in self.entry.course.assignments:
                gb.update_or_create_assignment(assignment.id, duedate=assignment.due)
        self.share_gradebook()

    def share_gradebook(self) -> None:
        """Let the service's account read the gradebook (dashboards, the grades API) through
        the root-owned folders, without listing or writing anything of them."""
        if self.service_account is None or self.gradebook_url != self.default_gradebook_url:
            return
        gid = self.service_account.gid
        share_grading_folder(self.root.parent, gid)
        share_grading_folder(self.root, gid)
        share_gradebook(self.root / "gradebook.db", gid)

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
            detail = (result.get("error") or result.get("log") or "").strip().splitlines()[-12:]
            raise GradingError(f"{step} failed:\n  " + "\n  ".join(detail))
        return result

    def release(self, assignment: str, *, force: bool = False) -> None:
        """Generate the student version (no solutions, no hidden tests) and release it."""
        self._require(assignment)
        self.prepare()
        config = self.nbgrader_config()
        # nbgrader's API takes `force` only from the config of the release step.
        config.ExchangeReleaseAssignment.force = force
        api = self._api(config)
        self._check("generate_assignment", api.generate_assignment(assignment, force=True))
        self._check("release_assignment", api.release_assignment(assignment))
        self.publish()
        log.info("released", extra={"course": self.course_id, "assignment": assignment})

    def collect(self, assignment: str) -> list[str]:
        """Collect the latest submission of every learner; return who submitted."""
        self._require(assignment)
        self.prepare()
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

    def autograde(
        self,
        assignment: str,
        *,
        parallel: int | None = None,
        progress: Callable[[GradeResult], None] | None = None,
    ) -> list[GradeResult]:
        """Autograde every collected submission in sandboxes, several at once, and record the
        grades for the learners' home pages.

        ``parallel`` overrides the course's parallelism for this run.
        """
        self._require(assignment)
        self.prepare()
        try:
            results = autograde_submissions(
                self.root,
                assignment,
                policy=self.policy,
                config=self.nbgrader_config(),
                parallel=parallel if parallel and parallel > 0 else self.parallel,
                progress=progress,
            )
        finally:
            self.publish()
        self.record_grades(results)
        return results

    def record_grades(self, results: list[GradeResult]) -> None:
        """Copy the scores into LearnHub's database (what the learner's home page shows)."""
        if not self.learnhub_db_url:
            return

        def store() -> None:
            upgrade(self.learnhub_db_url)
            db = Database(self.learnhub_db_url)
            try:
                store_grades(db, self.course_id, results)
            finally:
                db.dispose()

        # LearnHub's database is the service's: root writes none of its files.
        run_as_service_user(self.service_account, store)

    def feedback(self, assignment: str) -> list[str]:
        """Generate feedback (hidden tests stripped) and release it; return the students."""
        self._require(assignment)
        self.prepare()
        api = self._api()
        self._check("generate_feedback", api.generate_feedback(assignment, force=True))
        self._check("release_feedback", api.release_feedback(assignment))
        self.publish()
        students = _students_with(self.root / "feedback", assignment)
        log.info(
            "feedback released",
            extra={"course": self.course_id, "assignment": assignment, "count": len(students)},
        )
        return students

    def export(self, assignment: str | None = None) -> list[dict[str, Any]]:
        """:meth:`grades`, after taking back the instructors' manual grades."""
        try:
            prepare_host_directory(self.root)
        except OSError as exc:
            raise GradingError(f"{exc.filename}: {exc.strerror}") from exc
        self.take_back_gradebook()
        self.share_gradebook()
        return self.grades(assignment)

    def grades(self, assignment: str | None = None) -> list[dict[str, Any]]:
        """One row per graded submission (all assignments, or one)."""
        rows: list[dict[str, Any]] = []
        names = [assignment] if assignment else [a.id for a in self.entry.course.assignments]
        with Gradebook(self.gradebook_url, self.course_id) as gb:
            for name in names:
                try:
                    submissions = gb.find_assignment(name).submissions
                except MissingEntry:
                    continue
                for sub in sorted(submissions, key=lambda s: s.student.id):
                    rows.append(
                        {
                            "course": self.course_id,
                            "assignment": name,
                            "student": sub.student.id,
                            "score": round(float(sub.score), 4),
                            "max_score": round(float(sub.max_score), 4),
                            "late_penalty": round(float(sub.late_submission_penalty or 0), 4),
                            "seconds_late": round(float(sub.total_seconds_late or 0)),
                            "submitted_at": sub.timestamp.isoformat() if sub.timestamp else "",
                            "needs_manual_grade": bool(sub.needs_manual_grade),
                        }
                    )
        return rows

    def grant_extension(self, assignment: str, student: str, *, hours: float) -> None:
        """Move one learner's deadline for one assignment (0 removes the extension)."""
        self._require(assignment)
        self.prepare()
        with Gradebook(self.gradebook_url, self.course_id) as gb:
            gb.update_or_create_student(student)
            gb.update_or_create_submission(assignment, student)
            gb.grant_extension(assignment, student, minutes=round(hours * 60))
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
#: generated an nbgrader_config.py there).
_HOST_ONLY = frozenset({"nbgrader_config.py"})


def _students_with(folder: Path, assignment: str) -> list[str]:
    """Students that have `folder/<student>/<assignment>/` (nbgrader's layout), sorted."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if (p / assignment).is_dir())
