"""nbgrader's exchange over HTTP: the client classes, for learners and instructors.

Plugged into nbgrader through ``ExchangeFactory`` (e.g. in ``nbgrader_config.py``)::

    from learnhub_container.exchange import configure_nbgrader
    configure_nbgrader(c, "course-id")    # every ExchangeFactory trait -> a class below

so ``nbgrader fetch_assignment|submit|list|fetch_feedback|release_assignment|collect|
release_feedback`` and JupyterLab's Assignments tab talk to the LearnHub service instead of a
shared directory. Each class keeps nbgrader's steps (``init_src``, ``init_dest``,
``copy_files``) and return shapes (``ExchangeList`` gives the dicts the Assignments tab reads).

Configuration: ``HTTPExchange.exchange_url`` (default: env ``LEARNHUB_EXCHANGE_URL``) and
``HTTPExchange.api_token`` (default: env ``LEARNHUB_EXCHANGE_TOKEN``, else the server's own
``JUPYTERHUB_API_TOKEN``). The server decides who the caller is from the token alone.

One module per operation, as nbgrader's own ``exchange/default/``: ``exchange`` (the shared base),
``archive`` (tar packing), then ``fetch_assignment``, ``submit``, ``list``, ``fetch_feedback``,
``release_assignment``, ``collect``, ``release_feedback``. They depend only on nbgrader and the
standard library; the course image has them as part of ``learnhub_container``.
"""

from __future__ import annotations

from typing import Any

from learnhub_container.exchange.collect import ExchangeCollect
from learnhub_container.exchange.exchange import HTTPExchange
from learnhub_container.exchange.fetch_assignment import ExchangeFetchAssignment
from learnhub_container.exchange.fetch_feedback import ExchangeFetchFeedback
from learnhub_container.exchange.list import ExchangeList
from learnhub_container.exchange.release_assignment import ExchangeReleaseAssignment
from learnhub_container.exchange.release_feedback import ExchangeReleaseFeedback
from learnhub_container.exchange.submit import ExchangeSubmit

__all__ = [
    "EXCHANGE_CLASSES",
    "ExchangeCollect",
    "ExchangeFetchAssignment",
    "ExchangeFetchFeedback",
    "ExchangeList",
    "ExchangeReleaseAssignment",
    "ExchangeReleaseFeedback",
    "ExchangeSubmit",
    "HTTPExchange",
    "configure_nbgrader",
]

#: ``ExchangeFactory`` trait -> class of this module.
EXCHANGE_CLASSES = {
    "exchange": HTTPExchange,
    "fetch_assignment": ExchangeFetchAssignment,
    "fetch_feedback": ExchangeFetchFeedback,
    "list": ExchangeList,
    "submit": ExchangeSubmit,
    "release_assignment": ExchangeReleaseAssignment,
    "collect": ExchangeCollect,
    "release_feedback": ExchangeReleaseFeedback,
}


def configure_nbgrader(c: Any, course_id: str | None = None) -> None:
    """Point nbgrader's ``ExchangeFactory`` at these classes (and set the course, if given).

    Called from an ``nbgrader_config.py``; only sets values, so running it twice is harmless.
    """
    for trait, cls in EXCHANGE_CLASSES.items():
        setattr(c.ExchangeFactory, trait, f"{cls.__module__}.{cls.__name__}")
    if course_id:
        c.CourseDirectory.course_id = course_id
