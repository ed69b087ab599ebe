"""The Hub's opens of the service's SQLite database: never create a file, never change its schema.

In production the Hub runs as root and the LearnHub service as its own user, which owns
``service/`` and so can put a symbolic link where ``learnhub.sqlite`` was. SQLite follows a link
for the main database file and opens it with ``O_CREAT`` (Python's ``sqlite3`` cannot ask for
``SQLITE_OPEN_NOFOLLOW``), so a plain open would let that user make the root Hub create a file
wherever it likes. :func:`hub_database` is how the Hub opens it instead (docs/security.md,
"Still as root"); the service's own opens (:class:`hub.store.Database`) are unchanged.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError

from hub.errors import LearnHubError
from hub.settings import Settings
from hub.store.database import SQLITE_BUSY_TIMEOUT_MS, Database

log = logging.getLogger("learnhub.store")


class ServiceDatabaseRefused(LearnHubError):
    """The Hub did not open the service's SQLite file: it is not the file the service owns."""

    def __init__(self, path: Path, reason: str, remedy: str) -> None:
        super().__init__(f"{path}: {reason}; the Hub did not open it: {remedy}")
        self.path = path
        self.reason = reason
        self.remedy = remedy


def service_db_owner(settings: Settings) -> int:
    """The uid that must own LearnHub's SQLite file: the service's user, else this process's."""
    from hub.privilege import service_account

    account = service_account(settings)
    return account.uid if account is not None else os.geteuid()


def _inspect(path: Path, owner: int) -> tuple[os.stat_result | None, str, str]:
    """``(lstat, "", "")`` when ``path`` is a regular file owned by ``owner``, else
    ``(None, reason, remedy)``; logs nothing."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        reason = "does not exist"
        remedy = "start the Hub once (it creates the file for the service) or run learnhub upgrade"
        return None, reason, remedy
    if stat.S_ISLNK(info.st_mode):
        reason = "is a symbolic link, not the service's database file"
    elif not stat.S_ISREG(info.st_mode):
        reason = "is not a regular file"
    elif info.st_uid != owner:
        reason = f"belongs to uid {info.st_uid}, not to the service's uid {owner}"
    else:
        return info, "", ""
    remedy = (
        "only the service's account can have put it there; treat that account as "
        "compromised, move the entry aside and restore the database from a backup "
        "(docs/security.md, 'Still as root')"
    )
    return None, reason, remedy


def check_service_file(path: Path, owner: int) -> os.stat_result:
    """``path``'s lstat if it is a regular file owned by ``owner``; else log and raise
    :class:`ServiceDatabaseRefused` (a symbolic link is refused whatever it points to)."""
    info, reason, remedy = _inspect(path, owner)
    if info is not None:
        return info
    log.error(
        "learnhub database refused",
        extra={"path": str(path), "reason": reason, "remedy": remedy, "outcome": "refused"},
    )
    raise ServiceDatabaseRefused(path, reason, remedy)


#: What a Hub-side use of LearnHub's database raises when the database cannot be used right
#: now: the file was refused by :func:`check_service_file`, or the database could not be
#: opened, is locked past the busy timeout, or (PostgreSQL) does not answer (sqlalchemy's
#: ``OperationalError``). The Hub's mail pages answer these with a 503 (hub.mail.hub_handlers).
UNAVAILABLE: tuple[type[Exception], ...] = (ServiceDatabaseRefused, OperationalError)


def unavailable_reason(exc: BaseException) -> str | None:
    """Why LearnHub's database is unavailable, for a log line; None when ``exc`` is not one of
    :data:`UNAVAILABLE` (a bug, to be logged with its traceback).

    Only the driver's own message: sqlalchemy's text of the error also carries the statement
    and its parameters, which can hold a mail's signed token.
    """
    if isinstance(exc, ServiceDatabaseRefused):
        return f"refused: {exc.reason}"
    if isinstance(exc, OperationalError):
        return f"unreachable: {exc.orig}"
    return None


def probe(db: Database) -> BaseException | None:
    """Check out one connection of ``db`` (the Hub's kind checks the file first): the error of
    :data:`UNAVAILABLE` that says it cannot be used now, or None. Blocking."""
    try:
        with db.engine.connect():
            pass
    except UNAVAILABLE as exc:
        return exc
    return None


def hub_database(db_url: str, owner: int) -> Database:
    """LearnHub's database as the Hub opens it: for SQLite, read-write but never create.

    Each new connection first checks the file (:func:`check_service_file`), then opens it as
    a ``mode=rw`` URI, applies no pragma that writes and never migrates; a pooled connection is
    dropped when the file is no longer the one it opened, or no longer passes the check. Other
    databases (PostgreSQL) have no files: a plain :class:`Database`. Either way an error's text
    never shows a statement's parameters (they can hold a mail's signed token).
    """
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        # hub.store.database.create_engine's engine for these, plus hidden parameters.
        return Database(
            db_url, engine=sa.create_engine(url, pool_pre_ping=True, hide_parameters=True)
        )
    path = Path(str(url.database)).absolute()
    # Why this is enough, checked by experiment (tests/email/test_mail_units.py): with
    # mode=rw SQLite opens without O_CREAT, so a link to a missing path fails ("unable to
    # open database file") and creates nothing. If the check below loses a race and an
    # existing foreign file is opened: one that is not a database fails ("file is not a
    # database") with nothing written; an empty or other SQLite file lacks LearnHub's tables,
    # so each statement fails before SQLite writes a journal. The one write an open could
    # still make is `PRAGMA journal_mode=WAL` (it writes a 4 KiB header into an empty file),
    # so the Hub leaves that pragma to the service, whose `learnhub upgrade` set it for good.
    # No mkdir of the folder either: hub.privilege made it for the service.
    uri = URL.create(
        "sqlite", database=f"file:{quote(str(path))}", query={"mode": "rw", "uri": "true"}
    )
    engine = sa.create_engine(
        uri, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, hide_parameters=True
    )

    @sa.event.listens_for(engine, "do_connect")
    def _refuse_a_planted_file(_dialect: Any, record: Any, *_args: Any) -> None:
        info = check_service_file(path, owner)
        record.info["learnhub_file"] = (info.st_dev, info.st_ino)

    @sa.event.listens_for(engine, "checkout")
    def _still_the_checked_file(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        # The pool hands out open connections without "do_connect": before this, a file
        # refused (or replaced) after the Hub's first use went unnoticed for as long as the
        # pool kept a connection, and the Hub wrote to whatever inode it had opened
        # (tests/email/test_mail_units.py). An lstat per checkout; on a change the pool drops its
        # connections and opens a new one, which the check above accepts or refuses.
        info, _reason, _remedy = _inspect(path, owner)
        if info is None or (info.st_dev, info.st_ino) != record.info.get("learnhub_file"):
            raise sa.exc.InvalidatePoolError("LearnHub's database file changed since it was opened")

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        # This connection's settings only: none of them writes to the file.
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return Database(db_url, engine=engine)
