"""Who may open, teach and administer a course: the one place that rule is written.

A :class:`Member` is what LearnHub knows about a person at one moment: their name, whether they
are a hub admin, their JupyterHub groups and, where the caller has read them, the courses our
database entitles them to and the courses whose `course.yaml` lists them as an instructor. Its
methods answer from those facts alone: no Hub, no database, no I/O, so every caller (the
spawner, the exchange, checkout, the pages) asks the same question and gets the same answer.

The Hub's groups (`course-<id>`, `instructors-<id>`) are made from the entitlements and the
`course.yaml` files by :mod:`hub.access.hub_groups`; a caller that also passes those sources
sees a grant or an instructor before the next sync has reached the Hub.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hub.courses import COURSE_ID_PATTERN, Course, instructor_group, learner_group


def is_course_id(course_id: str) -> bool:
    """Whether ``course_id`` is a well-formed course id (so it names exactly one group pair)."""
    return re.fullmatch(COURSE_ID_PATTERN, course_id) is not None


def listed_instructor_of(name: str, courses: Iterable[Course]) -> frozenset[str]:
    """Ids of the ``courses`` whose `course.yaml` names ``name`` as an instructor (exactly)."""
    return frozenset(course.id for course in courses if name in course.instructors)


@dataclass(frozen=True)
class Member:
    """A person (or an operator's service) and the rights their groups and grants give them.

    ``entitled`` and ``listed`` are optional: empty, only the Hub's groups and the admin flag
    count, which is what the spawner and the exchange rely on.
    """

    name: str
    #: A hub admin: opens and administers every course.
    admin: bool = False
    #: The person's JupyterHub group names.
    groups: frozenset[str] = field(default_factory=frozenset)
    #: Courses an entitlement in our database gives them now (:mod:`hub.entitlements`).
    entitled: frozenset[str] = field(default_factory=frozenset)
    #: Courses whose `course.yaml` lists them as an instructor.
    listed: frozenset[str] = field(default_factory=frozenset)
    #: ``user``, or ``service`` for a Hub service token.
    kind: Literal["user", "service"] = "user"

    @classmethod
    def from_hub_model(cls, model: Mapping[str, Any]) -> Member:
        """A member from a Hub REST API user model (``name``, ``admin``, ``groups``)."""
        return cls(
            name=str(model["name"]),
            admin=bool(model.get("admin")),
            groups=frozenset(str(group) for group in model.get("groups") or ()),
        )

    def learns(self, course_id: str) -> bool:
        """A learner of the course: in its learner group, or entitled to it in our database."""
        return is_course_id(course_id) and (
            learner_group(course_id) in self.groups or course_id in self.entitled
        )

    def teaches(self, course_id: str) -> bool:
        """An instructor of the course: in its instructor group, or listed in `course.yaml`.

        Being a hub admin does not make someone an instructor (see :meth:`administers`).
        """
        return is_course_id(course_id) and (
            instructor_group(course_id) in self.groups or course_id in self.listed
        )

    def administers(self, course_id: str) -> bool:
        """May run the course (release, collect, grade, moderate, its dashboard): an
        instructor of it, or a hub admin."""
        return is_course_id(course_id) and (self.admin or self.teaches(course_id))

    def may_open(self, course_id: str) -> bool:
        """May open the course's server, its materials, assignments and community: a learner,
        an instructor, or a hub admin."""
        return self.administers(course_id) or self.learns(course_id)
