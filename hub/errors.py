"""The small exception hierarchy of LearnHub.

Every error carries a message meant for the person who can fix it (an operator for settings and
course files, a learner for access). Code catches these narrowly; nothing is swallowed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import ValidationError
from pydantic_core import ErrorDetails

if TYPE_CHECKING:
    # Tornado is imported where an HTTP error is made: processes without a web server (the
    # grading worker, most CLI commands) import this module too.
    from tornado.web import HTTPError


class LearnHubError(Exception):
    """Base class of every LearnHub error."""


class SettingsError(LearnHubError):
    """The settings file or environment is invalid; the message names file, key and problem."""


class CourseError(LearnHubError):
    """A `course.yaml` (or the catalog as a whole) is invalid; the message names file and key."""


class DockerUnreachable(LearnHubError):
    """The Docker engine did not answer; the message names its address and the remedy
    (:func:`hub.docker_engine.unreachable`)."""


class HubAPIError(LearnHubError):
    """The JupyterHub REST API refused or failed a request."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PageMessage:
    """A message key of :mod:`hub.i18n` and its values, for a page to show translated."""

    key: str
    values: dict[str, str]
    #: The course the message is about, for the page's "buy again" link.
    course_id: str = ""


def user_facing_http_error(
    status: int, message: str, *, key: str = "", course_id: str = "", **values: str
) -> HTTPError:
    """A tornado HTTPError whose `message` JupyterHub shows verbatim on its error page.

    JupyterHub replaces an HTTPError's message by a generic text when the spawn machinery tags
    the error with a reason; `jupyterhub_message` survives that. With ``key`` (a message of
    :mod:`hub.i18n`) the Hub's error page (hub/templates/error.html) shows that message in the
    visitor's language instead; ``message`` stays the English text for API callers and logs.
    """
    from tornado.web import HTTPError

    error = HTTPError(status, message)
    error.jupyterhub_message = message  # type: ignore[attr-defined]
    if key:
        error.learnhub_message = PageMessage(key, values, course_id)  # type: ignore[attr-defined]
    return error


def describe_validation_error(
    heading: str,
    error: ValidationError,
    explain: Callable[[ErrorDetails], str | None] = lambda item: None,
) -> str:
    """One message for a pydantic error: the heading, then `  key.path: problem` per problem.

    `explain` may return a friendlier problem text for an error item (None keeps pydantic's).
    """
    lines = [heading]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {key}: {explain(item) or item['msg']}")
    return "\n".join(lines)
