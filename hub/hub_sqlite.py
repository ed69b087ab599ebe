"""Pragmas for JupyterHub's own SQLite database, which JupyterHub opens itself."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

#: JupyterHub SQLite files already given the pragmas below in this process.
_TUNED_SQLITE: set[str] = set()


def tune_hub_sqlite(db_url: str) -> None:
    """WAL and ``synchronous=NORMAL`` for JupyterHub's own SQLite database.

    JupyterHub commits on its event loop, and SQLite's default rollback journal with FULL sync
    waits for the disk at every commit: in a 20-server burst a quarter of the Hub's busy time was
    commits. In WAL mode NORMAL never corrupts the database; a power cut may lose the last
    commits, which the Hub rebuilds from the running containers at its next start. LearnHub's
    own database already runs this way (`hub/store/database.py`). JupyterHub creates its engine
    itself, so this listens for new connections to that one file. PostgreSQL is untouched.
    """
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    path = str(Path(str(url.database)).resolve())
    if path in _TUNED_SQLITE:
        return
    _TUNED_SQLITE.add(path)

    def pragmas(dbapi_connection: Any, _record: Any) -> None:
        if not isinstance(dbapi_connection, sqlite3.Connection):
            return
        databases = dbapi_connection.execute("PRAGMA database_list").fetchall()
        if not any(name == "main" and file == path for _, name, file in databases):
            return
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    sa.event.listen(sa.engine.Engine, "connect", pragmas)
