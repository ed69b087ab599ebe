"""Autograde submissions with nbgrader's own pipeline, executing student code in sandboxes.

nbgrader's ``Autograde`` converter is kept as is (gradebook, restored locked and test cells,
checksums, hidden tests, partial credit, late penalties); only its ``Execute`` step is
replaced by :class:`~grader.preprocessors.SandboxedExecute`, and its ``OverwriteCells`` by
:class:`~grader.preprocessors.RestoreLockedCells` (the same, minus a warning per hidden-tests
cell and learner). Submissions are graded by a
pool of threads, one converter per student: their sandboxes run in parallel, while an
:class:`~grader.preprocessors.ExecutionGate` serialises the (fast) in-process nbgrader work,
so the SQLite gradebook only ever sees one writer.
"""

from __future__ import annotations

import asyncio
import copy
import glob
import logging
import os
import re
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbconvert.writers.files import FilesWriter
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.converters import Autograde
from nbgrader.converters.base import BaseConverter, NbGraderException
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import Execute, OverwriteCells
from sqlalchemy.exc import SAWarning
from traitlets.config import Config

from grader.preprocessors import ExecutionGate, RestoreLockedCells, SandboxedExecute
from grader.sandbox import SandboxPolicy, SandboxResult
from hub.docker_engine import require_engine

log = logging.getLogger("learnhub.grader.autograde")


@dataclass
class GradeResult:
    """The grade of one submission and how its sandbox runs ended.

    ``outcome`` is ``"ok"``, ``"limit"`` (a sandbox limit was hit: ``reason`` says which)
    or ``"error"`` (nbgrader or the sandbox failed; the submission has no new grade).
    """

    student: str
    assignment: str
    score: float | None
    max_score: float | None
    outcome: str
    reason: str
    detail: str = ""
    #: ``metadata.learnhub.sandbox`` of each graded notebook, by notebook id.
    notebooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Wall-clock seconds grading took (waiting for the execution gate included).
    seconds: float = 0.0


class SandboxedAutograde(Autograde):  # type: ignore[misc]
    """nbgrader's ``Autograde`` that runs its converters without changing directory.

    Stock ``start()`` does ``os.chdir(course root)``, which is process-wide and races
    between worker threads (and would move the hub's working directory); all paths here are
    absolute, so the change of directory is not needed.
    """

    def convert_single_notebook(self, notebook_filename: str) -> None:
        """``Autograde.convert_single_notebook`` without its ``NBGRADER_EXECUTION`` setenv.

        nbgrader's ``utils.setenv`` sets that variable in the grader's own ``os.environ``
        and then deletes it; two interleaved converters delete it twice (``KeyError``).
        It is meant for in-process kernels; the sandbox sets it in its own environment.
        """
        self.log.info("Sanitizing %s", notebook_filename)
        self._sanitizing = True
        self._init_preprocessors()
        BaseConverter.convert_single_notebook(self, notebook_filename)

        notebook_filename = os.path.join(
            self.writer.build_directory, os.path.basename(notebook_filename)
        )
        self.log.info("Autograding %s", notebook_filename)
        self._sanitizing = False
        self._init_preprocessors()
        try:
            BaseConverter.convert_single_notebook(self, notebook_filename)
        finally:
            self._sanitizing = True

    def start(self) -> None:
        """Same steps as ``BaseConverter.start`` minus the ``os.chdir``."""
        self.init_notebooks()
        self.writer = FilesWriter(parent=self, config=self.config)  # type: ignore[no-untyped-call]
        self.exporter = self.exporter_class(parent=self, config=self.config)
        for pp in self.preprocessors:
            self.exporter.register_preprocessor(pp)
        self.convert_notebooks()


class _RegradeIsExpected(logging.Filter):
    """Turn nbgrader's "Removing existing assignment" warning into a debug line.

    Regrading a learner replaces their autograded folder: that is what was asked for (a new
    submission, ``--all`` or ``--student``), not something to warn about once per learner.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Demote the expected warning; keep every other record."""
        if record.levelno == logging.WARNING and str(record.msg).startswith("Removing existing"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


#: nbgrader's converters log here; see :class:`_RegradeIsExpected`.
_nbgrader_log = logging.getLogger("learnhub.grader.nbgrader")
_nbgrader_log.addFilter(_RegradeIsExpected())


def course_config(root: Path, *, course_id: str = "", db_url: str | None = None) -> Config:
    """nbgrader's configuration for the course directory ``root``, built in memory.

    Never read from a file: the host does not execute an ``nbgrader_config.py``, because a
    course directory is data, and a copy of it lives where instructors' servers can write.
    """
    config = Config()
    config.CourseDirectory.root = str(root.resolve())
    if course_id:
        config.CourseDirectory.course_id = course_id
    if db_url:
        config.CourseDirectory.db_url = db_url
    # A submission with deleted test cells is graded as if they were there (nbgrader's
    # default is to skip them).
    config.OverwriteCells.add_missing_cells = True
    return config


def find_submitted_students(
    course_dir: Path, assignment: str, config: Config | None = None
) -> list[str]:
    """Students with a submitted folder for ``assignment``, sorted."""
    coursedir = CourseDirectory(config=config or course_config(course_dir))
    pattern = coursedir.format_path(coursedir.submitted_directory, "*", assignment)
    regexp = coursedir.format_path(
        coursedir.submitted_directory, "(?P<student_id>[^/]+)", re.escape(assignment), escape=True
    )
    students = set()
    for path in glob.glob(pattern):
        match = re.fullmatch(regexp, path)
        if match and os.path.isdir(path):
            students.add(match.group("student_id"))
    return sorted(students)


def _replace_execute(preprocessors: list[Any], sandboxed: SandboxedExecute) -> list[Any]:
    replaced = [
        sandboxed if isinstance(pp, type) and issubclass(pp, Execute) else pp
        for pp in preprocessors
    ]
    if sandboxed not in replaced:
        raise NbGraderException("Autograde.autograde_preprocessors has no Execute to replace")
    return replaced


def _summarise(results: list[tuple[str, SandboxResult]]) -> tuple[str, str, str]:
    for _, result in results:
        if result.outcome != "ok":
            return result.outcome, result.reason, result.detail
    return "ok", "", ""


def grade_submission(
    base_config: Config,
    assignment: str,
    student: str,
    *,
    policy: SandboxPolicy,
    gate: ExecutionGate,
    force: bool = True,
) -> GradeResult:
    """Autograde one student's submission (nbgrader + sandbox) and read back the score.

    The result's ``seconds`` is how long that took (the operators' autograde metrics).
    """
    started = time.monotonic()
    result = _grade_submission(
        base_config, assignment, student, policy=policy, gate=gate, force=force
    )
    result.seconds = time.monotonic() - started
    return result


def _grade_submission(
    base_config: Config,
    assignment: str,
    student: str,
    *,
    policy: SandboxPolicy,
    gate: ExecutionGate,
    force: bool,
) -> GradeResult:
    config = copy.deepcopy(base_config)
    config.CourseDirectory.assignment_id = assignment
    config.CourseDirectory.student_id = student
    config.Autograde.force = force
    config.Autograde.create_student = True
    coursedir = CourseDirectory(config=config)
    course_id = coursedir.course_id
    sandboxed = SandboxedExecute(config=config, policy=policy, gate=gate, course_id=course_id)
    converter = SandboxedAutograde(coursedir=coursedir, config=config, log=_nbgrader_log)
    converter.autograde_preprocessors = _replace_execute(
        list(converter.autograde_preprocessors), sandboxed
    )
    converter.sanitize_preprocessors = [
        RestoreLockedCells if pp is OverwriteCells else pp
        for pp in converter.sanitize_preprocessors
    ]
    context = {"course": course_id, "assignment": assignment, "student": student}
    with gate:
        try:
            converter.start()
        except NbGraderException as exc:
            detail = "; ".join(sandboxed.failures) or str(exc)
            log.error("autograde failed", extra={**context, "outcome": "error", "error": detail})
            reason = "sandbox-error" if sandboxed.failures else "grading-failed"
            return GradeResult(student, assignment, None, None, "error", reason, detail)
        try:
            with Gradebook(coursedir.db_url, course_id) as gb:
                submission = gb.find_submission(assignment, student)
                score, max_score = float(submission.score), float(submission.max_score)
        except MissingEntry as exc:
            return GradeResult(student, assignment, None, None, "error", "not-graded", str(exc))
    outcome, reason, detail = _summarise(sandboxed.results)
    result = GradeResult(
        student,
        assignment,
        score,
        max_score,
        outcome,
        reason,
        detail,
        {notebook: res.as_metadata() for notebook, res in sandboxed.results},
    )
    log.info(
        "autograde finished",
        extra={**context, "outcome": outcome, "reason": reason, "score": score},
    )
    return result


def default_parallel() -> int:
    """Submissions graded at once by default: two per CPU core.

    A sandbox keeps its core busy only part of the time: a third of its life is Docker
    creating, starting and tearing down the container. With one per core the cores idle
    through those waits; two per core keep them busy (20 submissions on 2 cores: 13.9 s with
    2 at once, 11.4 s with 4), and each sandbox is still capped at its own CPU limit.
    """
    return 2 * (os.cpu_count() or 1)


def autograde_submissions(
    course_dir: Path,
    assignment: str,
    students: list[str] | None = None,
    *,
    policy: SandboxPolicy,
    config: Config | None = None,
    parallel: int | None = None,
    progress: Callable[[GradeResult], None] | None = None,
    force: bool = True,
) -> list[GradeResult]:
    """Autograde ``assignment`` for ``students`` (default: everyone who submitted).

    ``config`` is nbgrader's configuration (default: :func:`course_config` of ``course_dir``).

    ``parallel`` submissions are graded at once (default: :func:`default_parallel`); ``progress`` is
    called in the caller's thread with each result as it completes. Results come back in
    the order of ``students``. ``force`` regrades submissions graded before (as
    ``nbgrader autograde --force``).
    """
    # nbgrader's gradebook code trips SQLAlchemy's cascade-backrefs warning while grading
    # ("Object of type <SubmittedAssignment> not in session"): harmless, and printed as a
    # Python warning on the terminal of whoever runs the command.
    warnings.filterwarnings(
        "ignore", message=r"Object of type <\w+> not in session", category=SAWarning
    )
    base_config = config or course_config(course_dir)
    if students is None:
        students = find_submitted_students(course_dir, assignment, base_config)
    if students and policy is not None and policy.backend in ("docker", "swarm"):
        # Without an engine every submission would fail alone, each with nbgrader's
        # traceback: one error instead, that says how to bring the engine back.
        require_engine()
    workers = max(1, parallel if parallel is not None else default_parallel())
    gate = ExecutionGate()
    results: dict[str, GradeResult] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="autograde") as pool:
        futures = {
            pool.submit(
                grade_submission,
                base_config,
                assignment,
                student,
                policy=policy,
                gate=gate,
                force=force,
            ): student
            for student in students
        }
        try:
            for future in as_completed(futures):
                result = future.result()
                results[futures[future]] = result
                if progress is not None:
                    progress(result)
        except BaseException:
            # Ctrl-C, or ``progress`` stopping the run (a grading worker told to stop): the
            # submissions not yet started are dropped, those in their sandboxes finish and are
            # removed. Leaving the pool would otherwise grade every queued one first.
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return [results[student] for student in students]


async def autograde_submissions_async(
    course_dir: Path,
    assignment: str,
    students: list[str] | None = None,
    *,
    policy: SandboxPolicy,
    config: Config | None = None,
    parallel: int | None = None,
    force: bool = True,
) -> list[GradeResult]:
    """:func:`autograde_submissions` on a worker thread, for the hub's event loop."""
    return await asyncio.to_thread(
        autograde_submissions,
        course_dir,
        assignment,
        students,
        policy=policy,
        config=config,
        parallel=parallel,
        force=force,
    )
