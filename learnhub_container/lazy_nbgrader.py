"""nbgrader's learner routes (Assignments tab, Validate), with nbgrader imported on first use.

nbgrader's own server extensions import the whole of nbgrader when the server starts: its
gradebook ORM (sqlalchemy), nbconvert and every nbgrader app. Measured in the learner image
that is about 0.5 CPU-seconds of every server start and 35 MiB of every idle server, paid by
each learner whether or not they open the Assignments tab in that session.

This extension serves the same routes with nbgrader's own handler classes, unchanged, but
imports them the first time one of those routes is requested: a route's target is a small
``RequestHandler`` subclass whose ``__new__`` builds the real nbgrader handler instead. The
Dockerfile enables this module in place of nbgrader's ``assignment_list``,
``validate_assignment`` and ``course_list`` extensions (the last one serves the instructors'
course list, which learners never see).

The routes are nbgrader 0.9's ``default_handlers`` of those modules; a test of the image checks
that they still match the installed nbgrader.
"""

from __future__ import annotations

import importlib
from typing import Any

from jupyter_server.utils import url_path_join
from tornado import web

ASSIGNMENT_LIST = "nbgrader.server_extensions.assignment_list.handlers"
VALIDATE = "nbgrader.server_extensions.validate_assignment.handlers"

#: (path under the server's base URL, module, handler class), in nbgrader's order: where both of
#: nbgrader's extensions define /nbgrader_version, the assignment list's is registered first.
ROUTES: list[tuple[str, str, str]] = [
    (r"/assignments", ASSIGNMENT_LIST, "AssignmentListHandler"),
    (
        r"/assignments/(?P<action>fetch|submit|fetch_feedback)",
        ASSIGNMENT_LIST,
        "AssignmentActionHandler",
    ),
    (r"/courses", ASSIGNMENT_LIST, "CourseListHandler"),
    (r"/nbgrader_version", ASSIGNMENT_LIST, "NbGraderVersionHandler"),
    (r"/assignments/validate", VALIDATE, "ValidateAssignmentHandler"),
]


def _assignment_list_manager(application: web.Application) -> None:
    """What nbgrader's assignment_list extension sets up at load, done at first use instead."""
    settings = application.settings
    if "assignment_list_manager" in settings:
        return
    serverapp = settings["serverapp"]
    manager = importlib.import_module(ASSIGNMENT_LIST).AssignmentList(parent=serverapp)
    manager.root_dir = serverapp.root_dir
    settings["assignment_list_manager"] = manager


def lazy_handler(module: str, name: str) -> type[web.RequestHandler]:
    """A route target that becomes nbgrader's ``module.name`` handler when a request arrives."""

    class LazyHandler(web.RequestHandler):
        def __new__(  # type: ignore[misc]
            cls, application: web.Application, request: Any, **kwargs: Any
        ) -> web.RequestHandler:
            real = getattr(importlib.import_module(module), name)
            if module == ASSIGNMENT_LIST:
                _assignment_list_manager(application)
            # Not an instance of LazyHandler, so Python does not call __init__ again: the real
            # handler is fully built by its own constructor.
            handler: web.RequestHandler = real(application, request, **kwargs)
            return handler

    LazyHandler.__name__ = LazyHandler.__qualname__ = f"Lazy{name}"
    return LazyHandler


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "learnhub_container.lazy_nbgrader"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    webapp = serverapp.web_app
    # validate_assignment's handler reads the notebook root from here (set at its load).
    webapp.settings["root_dir"] = serverapp.root_dir
    base_url = webapp.settings["base_url"]
    routes = [(path, lazy_handler(module, name)) for path, module, name in ROUTES]
    webapp.add_handlers(".*$", [(url_path_join(base_url, path), target) for path, target in routes])
    serverapp.log.info("lazy_nbgrader: Assignments routes ready; nbgrader loads at first use")
