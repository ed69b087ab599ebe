"""The course catalog: `courses/<id>/course.yaml`, validated.

A course folder holds `course.yaml`, the learner-facing `materials/` that are synced into every
learner's workspace, and nbgrader `source/<assignment>/` notebooks. A malformed `course.yaml`
raises :class:`CourseError` naming the file, the key and the problem; the catalog never loads
half a course.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from hub.errors import CourseError, describe_validation_error
from hub.settings import MEMORY_PATTERN, ResourceLimits, SandboxSettings

#: Course ids become group names, server names, container and volume names, and URL segments.
#: JupyterHub 6 accepts as server names only "safe slugs": 1-30 characters, lowercase letters,
#: digits and single hyphens, starting with a letter and ending with a letter or digit.
COURSE_ID_PATTERN = r"^[a-z](?:-?[a-z0-9]){0,29}$"
COURSE_ID_MAX = 30
#: Learner groups are named `course-<id>`; instructor groups `instructors-<id>`.
LEARNER_GROUP_PREFIX = "course-"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Price(_Model):
    """A one-off course price in minor units."""

    amount: int = Field(ge=0, description="Minor units (cents); 0 means free with sign-up.")
    currency: Annotated[str, Field(pattern=r"^[a-z]{3}$")] = "usd"


class CourseLimits(_Model):
    """Per-course overrides of the container limits."""

    memory: Annotated[str, Field(pattern=MEMORY_PATTERN)] | None = None
    cpu: Annotated[float, Field(gt=0, le=64)] | None = None


#: ``14d``, ``36h``, ``2w``: how long after a learner's enrolment a self-paced assignment is due.
RELATIVE_DUE_PATTERN = r"^([1-9][0-9]{0,3})([hdw])$"
_RELATIVE_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def parse_relative_due(value: object) -> object:
    """``"14d"`` -> 14 days (``h`` hours, ``d`` days, ``w`` weeks); anything else unchanged
    (pydantic then explains what it expected)."""
    if isinstance(value, str):
        match = re.fullmatch(RELATIVE_DUE_PATTERN, value.strip())
        if match is None:
            raise ValueError(
                f"write a whole number and a unit: 36h (hours), 14d (days) or 2w (weeks), "
                f"got {value!r}"
            )
        return timedelta(**{_RELATIVE_UNITS[match.group(2)]: int(match.group(1))})
    return value


RelativeDue = Annotated[timedelta, BeforeValidator(parse_relative_due)]


class Assignment(_Model):
    """An nbgrader assignment of the course."""

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
    title: str = Field(min_length=1)
    due: AwareDatetime | None = Field(
        None, description="Cohort courses: the deadline, the same for every learner."
    )
    due_after: RelativeDue | None = Field(
        None,
        description=(
            "Self-paced courses: the deadline counted from each learner's enrolment (purchase "
            "or grant), e.g. `14d`, `36h`, `2w`."
        ),
    )


class CourseSandbox(_Model):
    """Per-course overrides of the settings' `grading.sandbox` limits (unset: the settings')."""

    memory: str | None = None
    cpus: float | None = None
    pids: int | None = None
    cell_timeout: int | None = None
    notebook_timeout: float | None = None
    parallel: int | None = None

    @model_validator(mode="after")
    def _within_settings_bounds(self) -> CourseSandbox:
        # The bounds live once, on the settings model; a course is held to the same ones.
        SandboxSettings.model_validate(self.overrides())
        return self

    def overrides(self) -> dict[str, Any]:
        """The keys this course sets."""
        return {key: value for key, value in self.model_dump().items() if value is not None}


class Grading(_Model):
    """How late work is graded, and the course's own sandbox limits."""

    late_penalty_percent_per_day: Annotated[float, Field(ge=0, le=100)] = 0.0
    max_late_penalty_percent: Annotated[float, Field(ge=0, le=100)] = 100.0
    sandbox: CourseSandbox = Field(default_factory=CourseSandbox)


class Completion(_Model):
    """What passing the course means (`completion:`); a learner who passes gets a certificate.

    Percentages are of each assignment's maximum, after late penalties; an assignment without a
    graded submission counts as 0 %. With both rules set, both must hold.
    """

    min_percent_each: Annotated[float, Field(gt=0, le=100)] | None = Field(
        None, description="Every counted assignment scores at least this percent."
    )
    min_percent_total: Annotated[float, Field(gt=0, le=100)] | None = Field(
        None, description="The counted assignments' points together reach this percent."
    )
    assignments: list[str] | None = Field(
        None, description="The assignment ids that count (unset: every assignment)."
    )

    @model_validator(mode="after")
    def _has_a_rule(self) -> Completion:
        if self.min_percent_each is None and self.min_percent_total is None:
            raise ValueError(
                "give min_percent_each (every assignment at least this percent), "
                "min_percent_total (all points together), or both; e.g. min_percent_each: 60"
            )
        return self


class Course(_Model):
    """One course, as declared in its `course.yaml`."""

    id: Annotated[str, Field(pattern=COURSE_ID_PATTERN, max_length=COURSE_ID_MAX)]
    title: str = Field(min_length=1, max_length=200)
    summary: str = Field(min_length=1, max_length=500)
    description: str = ""
    price: Price
    image: str | None = None
    instructors: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    limits: CourseLimits = Field(default_factory=CourseLimits)
    internet: bool = Field(
        False,
        description=(
            "Whether the course's servers may reach the internet (e.g. to pip install). Private "
            "and link-local addresses stay blocked either way; other learners never reachable."
        ),
    )
    syllabus: list[str] = Field(default_factory=list)
    outcomes: list[str] = Field(default_factory=list)
    pacing: Literal["cohort", "self-paced"] = Field(
        "cohort",
        description=(
            "`cohort`: every learner has the same deadlines (`assignments[].due`). "
            "`self-paced`: each learner's deadlines count from their own enrolment "
            "(`assignments[].due_after`), applied as nbgrader extensions."
        ),
    )
    assignments: list[Assignment] = Field(default_factory=list)
    grading: Grading = Field(default_factory=Grading)
    community_rules: str = Field(
        "",
        max_length=20_000,
        description=(
            "The rules of the course's Q&A (Markdown), shown on its public rules page and linked "
            "from the Q&A pages; empty shows LearnHub's default rules, in the reader's language."
        ),
    )
    preview: str | None = Field(
        None,
        description=(
            "A free preview lesson: a notebook in `materials/` (e.g. `01-intro.ipynb`) that "
            "anyone may read, rendered to HTML (not executed), on the course's public page "
            "`courses/<id>/preview`."
        ),
    )
    completion: Completion | None = Field(
        None,
        description=(
            "What passing the course means; a learner who passes gets a certificate when "
            "feedback is released (unset: no certificates)."
        ),
    )

    @field_validator("assignments")
    @classmethod
    def _deadlines_match_pacing(
        cls, value: list[Assignment], info: ValidationInfo
    ) -> list[Assignment]:
        # One kind of deadline per course: a cohort date in a self-paced course (or the other
        # way round) would be silently ignored, and learners told the wrong thing.
        pacing = info.data.get("pacing", "cohort")
        for assignment in value:
            if pacing == "cohort" and assignment.due_after is not None:
                raise ValueError(
                    f"{assignment.id}.due_after: only for `pacing: self-paced`; a cohort course "
                    "gives a date with `due:`"
                )
            if pacing == "self-paced" and assignment.due is not None:
                raise ValueError(
                    f"{assignment.id}.due: a self-paced course counts deadlines from each "
                    "learner's enrolment: write `due_after: 14d` instead"
                )
        return value

    @field_validator("preview")
    @classmethod
    def _preview_is_a_materials_notebook(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = value.split("/")
        if not value.endswith(".ipynb") or value.startswith("/") or ".." in parts or "" in parts:
            raise ValueError(
                f"must be a notebook path inside materials/, like 01-intro.ipynb, got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _completion_counts_known_assignments(self) -> Course:
        if self.completion is None:
            return self
        known = [a.id for a in self.assignments]
        if not known:
            raise ValueError("completion: the course has no assignments to pass; list them first")
        for name in self.completion.assignments or []:
            if name not in known:
                raise ValueError(
                    f"completion.assignments: {name!r} is not an assignment of this course "
                    f"(known: {', '.join(known)})"
                )
        return self

    def counted_assignments(self) -> list[str]:
        """The assignment ids that ``completion`` counts (every assignment when unset)."""
        chosen = self.completion.assignments if self.completion else None
        return list(chosen) if chosen else [a.id for a in self.assignments]

    @field_validator("assignments")
    @classmethod
    def _unique_assignment_ids(cls, value: list[Assignment]) -> list[Assignment]:
        seen: set[str] = set()
        for assignment in value:
            if assignment.id in seen:
                raise ValueError(f"assignment id {assignment.id!r} is listed twice")
            seen.add(assignment.id)
        return value

    @property
    def learner_group(self) -> str:
        """JupyterHub group of the people who may open this course."""
        return learner_group(self.id)

    @property
    def instructor_group(self) -> str:
        """JupyterHub group of the course's instructors."""
        return instructor_group(self.id)

    def resource_limits(self, defaults: ResourceLimits) -> ResourceLimits:
        """The effective limits: the course's own, else the platform defaults."""
        return ResourceLimits(
            memory=self.limits.memory or defaults.memory,
            cpu=self.limits.cpu or defaults.cpu,
        )

    def sandbox_settings(self, defaults: SandboxSettings) -> SandboxSettings:
        """The effective sandbox limits: the course's own (`grading.sandbox`), else the defaults."""
        return SandboxSettings.model_validate(
            {**defaults.model_dump(), **self.grading.sandbox.overrides()}
        )

    def assignment(self, assignment_id: str) -> Assignment | None:
        """The assignment with this id, or None."""
        return next((a for a in self.assignments if a.id == assignment_id), None)


@dataclass(frozen=True)
class CourseEntry:
    """A validated course together with where it lives on disk."""

    course: Course
    folder: Path

    @property
    def materials_dir(self) -> Path:
        """Learner-facing files synced into each workspace."""
        return self.folder / "materials"

    @property
    def source_dir(self) -> Path:
        """nbgrader source assignments."""
        return self.folder / "source"


def _describe(error: ValidationError, path: Path) -> str:
    def explain(item: ErrorDetails) -> str | None:
        if item["type"] == "value_error":
            return item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            return "unknown key"
        if (
            item["type"] in ("string_pattern_mismatch", "string_too_long")
            and item["loc"][-1] == "id"
        ):
            return (
                "must start with a letter and be lowercase letters, digits and single dashes "
                f"(at most 30; it becomes a JupyterHub server name), got {item.get('input')!r}"
            )
        return None

    return describe_validation_error(f"{path}: invalid course", error, explain)


def load_course(folder: Path) -> CourseEntry:
    """Load and validate `folder/course.yaml`; the course id must equal the folder name."""
    path = folder / "course.yaml"
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CourseError(f"{path}: missing; every course folder needs a course.yaml") from None
    except yaml.YAMLError as exc:
        raise CourseError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise CourseError(f"{path}: the top level must be a mapping (id:, title:, ...)")
    try:
        course = Course.model_validate(raw)
    except ValidationError as exc:
        raise CourseError(_describe(exc, path)) from None
    if course.id != folder.name:
        raise CourseError(f"{path}: id: {course.id!r} must equal the folder name {folder.name!r}")
    for assignment in course.assignments:
        if not (folder / "source" / assignment.id).is_dir():
            raise CourseError(
                f"{path}: assignments.{assignment.id}: no folder source/{assignment.id}/ "
                "with its nbgrader source notebooks"
            )
    if course.preview is not None and not (folder / "materials" / course.preview).is_file():
        raise CourseError(
            f"{path}: preview: no notebook materials/{course.preview}; name one of the "
            "course's materials/ notebooks, or remove the key"
        )
    return CourseEntry(course=course, folder=folder.resolve())


class Catalog:
    """All courses, by id, in a stable order."""

    def __init__(self, entries: list[CourseEntry]) -> None:
        self._entries = {entry.course.id: entry for entry in entries}

    @classmethod
    def load(cls, courses_dir: Path) -> Catalog:
        """Load every `courses_dir/*/course.yaml`; any invalid course fails the whole load."""
        if not courses_dir.is_dir():
            raise CourseError(
                f"{courses_dir.resolve()}: courses folder not found "
                "(a relative courses_dir is read from the current directory)"
            )
        folders = sorted(
            p for p in courses_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
        return cls([load_course(folder) for folder in folders])

    def __iter__(self) -> Iterator[CourseEntry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, course_id: object) -> bool:
        return course_id in self._entries

    def get(self, course_id: str) -> CourseEntry | None:
        """The course with this id, or None."""
        return self._entries.get(course_id)

    def ids(self) -> list[str]:
        """All course ids."""
        return list(self._entries)


def load_courses(courses_dir: Path, course_ids: list[str]) -> list[CourseEntry]:
    """The courses ``course_ids`` (all of the catalog when empty), each validated on its own.

    Naming courses loads only their folders, so a course being written can be checked while
    another course's `course.yaml` is broken.
    """
    if not course_ids:
        return list(Catalog.load(courses_dir))
    entries = []
    for course_id in course_ids:
        folder = courses_dir / course_id
        if not re.fullmatch(COURSE_ID_PATTERN, course_id) or not folder.is_dir():
            known = ", ".join(sorted(p.parent.name for p in courses_dir.glob("*/course.yaml")))
            raise CourseError(
                f"no course {course_id!r} in {courses_dir} (known: {known or 'none'}); a course "
                "is a folder with a course.yaml"
            )
        entries.append(load_course(folder))
    return entries


def learner_group(course_id: str) -> str:
    """JupyterHub group of the learners of a course."""
    return f"{LEARNER_GROUP_PREFIX}{course_id}"


def instructor_group(course_id: str) -> str:
    """JupyterHub group of the instructors of a course."""
    return f"instructors-{course_id}"


def course_id_from_group(group: str) -> str | None:
    """`course-x` -> `x`; any other group (instructors-x, ...) -> None."""
    return (
        group.removeprefix(LEARNER_GROUP_PREFIX) if group.startswith(LEARNER_GROUP_PREFIX) else None
    )
