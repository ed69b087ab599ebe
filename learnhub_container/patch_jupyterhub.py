"""Image build step: keep the Hub's ORM out of every single-user server (JupyterHub 6.1.1).

``jupyterhub-singleuser`` needs little of the ``jupyterhub`` package: the OAuth client, the
scope intersection of ``jupyterhub.services.auth`` and the request log of ``jupyterhub.log``.
But two of those modules import the Hub's whole server side at import time:

- ``jupyterhub/scopes.py`` imports ``sqlalchemy``, ``jupyterhub.orm`` and ``jupyterhub.roles``,
  which the single-user server never calls into (its scope checks pass no database);
- ``jupyterhub/utils.py`` imports ``sqlalchemy`` for one ``except`` in a decorator of the Hub's
  handlers;
- ``jupyterhub/log.py`` imports ``HealthCheckHandler`` from the Hub's page handlers (and with
  them the ORM, spawners and users) and the Hub's Prometheus metrics, only to quiet the Hub's
  health checks and to count the Hub's requests.

In the learner image that was about a third of every server start's import time (sqlalchemy,
alembic, mako, pygments: ~0.3 CPU-s) and ~40 MiB of every running server. These exact-text
edits make ``scopes.py`` import the three on first use, ``utils.py`` import sqlalchemy where
that decorator is applied, and ``log.py`` use the handler and the
metrics only where the Hub process has loaded them (it always has before serving a request).
Nothing changes in the Hub itself, which runs from its own environment, nor in what a
single-user server does. When the text is not found (a JupyterHub upgrade), the build fails
here rather than shipping an unknown state: revise the edits or drop them if upstream has
fixed this (same problem: https://github.com/jupyterhub/the-littlest-jupyterhub/issues/841).

    python -m learnhub_container.patch_jupyterhub /path/to/site-packages/jupyterhub
"""

from __future__ import annotations

import sys
from pathlib import Path

LAZY_MODULES = '''import importlib as _importlib
import types as _types


class _LazyModule(_types.ModuleType):
    """LearnHub image patch: the module is imported at its first attribute use."""

    def __init__(self, target):
        super().__init__(target)
        self._lazy_target = target

    def __getattr__(self, attr):
        return getattr(_importlib.import_module(self._lazy_target), attr)


sa = _LazyModule("sqlalchemy")
orm = _LazyModule("jupyterhub.orm")
roles = _LazyModule("jupyterhub.roles")
'''

EDITS: dict[str, list[tuple[str, str]]] = {
    "scopes.py": [
        ("import sqlalchemy as sa\n", ""),
        ("from . import orm, roles\n", LAZY_MODULES),
    ],
    "utils.py": [
        ("from sqlalchemy.exc import SQLAlchemyError\n", ""),
        (
            '    """Catch and rollback database errors"""\n',
            '    """Catch and rollback database errors"""\n'
            "    from sqlalchemy.exc import SQLAlchemyError  # LearnHub image patch: Hub only\n\n",
        ),
    ],
    "log.py": [
        (
            "from .handlers.pages import HealthCheckHandler\n"
            "from .metrics import prometheus_log_method\n",
            "import sys  # LearnHub image patch: the Hub's handlers and metrics, where loaded\n\n\n"
            "def _quiet_handler_types():\n"
            "    pages = sys.modules.get('jupyterhub.handlers.pages')\n"
            "    if pages is None:\n"
            "        return (StaticFileHandler,)\n"
            "    return (StaticFileHandler, pages.HealthCheckHandler)\n",
        ),
        (
            "isinstance(handler, StaticFileHandler | HealthCheckHandler)",
            "isinstance(handler, _quiet_handler_types())",
        ),
        (
            "    log_method(msg.format(**ns))\n    prometheus_log_method(handler)\n",
            "    log_method(msg.format(**ns))\n"
            "    metrics = sys.modules.get('jupyterhub.metrics')\n"
            "    if metrics is not None:\n"
            "        metrics.prometheus_log_method(handler)\n",
        ),
    ],
}


def patch(package: Path) -> None:
    for name, edits in EDITS.items():
        path = package / name
        text = path.read_text()
        for old, new in edits:
            if text.count(old) != 1:
                raise SystemExit(
                    f"{path}: expected exactly one occurrence of {old!r}. These edits are "
                    "written for JupyterHub 6.1.1; revise them for the installed version."
                )
            text = text.replace(old, new)
        path.write_text(text)


if __name__ == "__main__":
    patch(Path(sys.argv[1]))
