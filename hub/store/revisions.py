"""Which schema a database is at, and migrating it explicitly: locked, backed up, once.

Only ``learnhub upgrade`` (:mod:`hub.upgrade`) moves an existing database forward. Everything
else that opens LearnHub's database calls :func:`ensure_store` at start: a brand-new empty
database is created at the code's head (a fresh install keeps working with no extra step), one at
the head is used as it is, and one behind (or ahead of) the code is refused with one line that
says what to run. Before this, every command migrated on open, unlocked, so a newer CLI changed
the schema under an older running service.

The lock is the same for every kind of migration and works across processes: an ``flock`` on a
file beside a SQLite database, ``pg_advisory_lock`` on PostgreSQL (the database may be on
another host than the command).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import Engine, make_url

from hub.errors import LearnHubError
from hub.store.database import MIGRATIONS_DIR, create_engine, upgrade
from hub.store.models import Base

log = logging.getLogger("learnhub.store")

#: What every refusal ends with: the one command that fixes it.
UPGRADE_HINT = "run `learnhub upgrade` (with the platform stopped), then start again"


class StoreRevisionError(LearnHubError):
    """A database is not at the schema this code expects; the message says what to run."""


@dataclass(frozen=True)
class Revision:
    """Where a database is (``None``: no revision recorded) and where the code is."""

    current: str | None
    head: str
    #: No revision and none of the code's tables: a brand-new database.
    empty: bool
    #: ``current`` is not a revision this code knows: a newer LearnHub migrated it.
    unknown: bool = False

    @property
    def at_head(self) -> bool:
        """Whether nothing needs migrating."""
        return self.current == self.head


@dataclass(frozen=True)
class Migration:
    """What :func:`migrate_store` did."""

    before: str | None
    after: str
    backup: Path | None

    @property
    def changed(self) -> bool:
        """Whether the schema moved."""
        return self.before != self.after


@functools.cache
def learnhub_scripts() -> ScriptDirectory:
    """LearnHub's migrations, read once per process (a start checks the revision twice)."""
    return ScriptDirectory(str(MIGRATIONS_DIR))


def learnhub_head() -> str:
    """The newest revision of LearnHub's migrations (what this code needs)."""
    head = learnhub_scripts().get_current_head()
    if head is None:  # pragma: no cover - the package always ships its migrations
        raise AssertionError(f"no migrations in {MIGRATIONS_DIR}")
    return head


def read_revision(
    engine: Engine, *, scripts: ScriptDirectory, tables: set[str], version_table: str
) -> Revision:
    """Where the database behind ``engine`` is, against the migrations in ``scripts``.

    ``tables`` are the schema's own tables: a database with none of them and no revision is
    empty. Used for both LearnHub's and JupyterHub's databases.
    """
    head = scripts.get_current_head()
    if head is None:  # pragma: no cover
        raise AssertionError("no migrations")
    with engine.connect() as connection:
        present = set(sa.inspect(connection).get_table_names())
        current = None
        if version_table in present:
            context = MigrationContext.configure(connection, opts={"version_table": version_table})
            current = context.get_current_revision()
    empty = current is None and not (present & tables)
    unknown = False
    if current is not None:
        try:
            unknown = scripts.get_revision(current) is None
        except CommandError:
            unknown = True
    return Revision(current=current, head=head, empty=empty, unknown=unknown)


def store_revision(db_url: str) -> Revision:
    """Where LearnHub's database at ``db_url`` is."""
    engine = create_engine(db_url)
    try:
        return read_revision(
            engine,
            scripts=learnhub_scripts(),
            tables=set(Base.metadata.tables),
            version_table="alembic_version",
        )
    finally:
        engine.dispose()


def describe(url: str) -> str:
    """A database for messages and logs: the SQLite file, or the URL without its password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return str(parsed.database)
    return parsed.render_as_string(hide_password=True)


def refusal(what: str, url: str, revision: Revision) -> StoreRevisionError:
    """The one-line error for a database this code must not run on."""
    if revision.unknown:
        return StoreRevisionError(
            f"{what} ({describe(url)}) is at revision {revision.current}, which this LearnHub "
            f"does not know (its newest is {revision.head}): a newer LearnHub migrated it; run "
            "that version, or restore the backup `learnhub upgrade` made before migrating"
        )
    at = revision.current or "no recorded revision"
    return StoreRevisionError(
        f"{what} ({describe(url)}) is at {at}, behind this LearnHub ({revision.head}): "
        + UPGRADE_HINT
    )


def check_store(db_url: str) -> Revision:
    """Refuse (:class:`StoreRevisionError`) a LearnHub database that is behind or ahead of the
    code; an empty one passes (it is created at the head by :func:`ensure_store`)."""
    revision = store_revision(db_url)
    if revision.empty or revision.at_head:
        return revision
    raise refusal("LearnHub's database", db_url, revision)


def ensure_store(db_url: str) -> None:
    """Make LearnHub's database usable at start: create an empty one at the head (locked, so a
    service and a command starting together create it once); refuse one behind or ahead."""
    if not check_store(db_url).empty:
        return
    with migration_lock(db_url, "learnhub"):
        # Another process may have created it while this one waited.
        if not check_store(db_url).empty:
            return
        upgrade(db_url)
    log.info(
        "created LearnHub's database at the current revision",
        extra={"database": describe(db_url), "revision": learnhub_head(), "outcome": "created"},
    )


def migrate_store(db_url: str, *, on_wait: Callable[[str], None] | None = None) -> Migration:
    """Bring LearnHub's database to the head, under the migration lock, after backing up a
    SQLite file; a database at the head is left alone. What ``learnhub upgrade`` runs."""
    with migration_lock(db_url, "learnhub", on_wait=on_wait):
        revision = store_revision(db_url)
        if revision.unknown:
            raise refusal("LearnHub's database", db_url, revision)
        if revision.at_head:
            return Migration(before=revision.current, after=revision.head, backup=None)
        backup = None if revision.empty else backup_sqlite(db_url)
        upgrade(db_url)
    log.info(
        "migrated LearnHub's database",
        extra={
            "database": describe(db_url),
            "before": revision.current,
            "revision": revision.head,
            "backup": str(backup) if backup else "",
            "outcome": "migrated",
        },
    )
    return Migration(before=revision.current, after=revision.head, backup=backup)


def sqlite_path(db_url: str) -> Path | None:
    """The file of a SQLite URL, else None (an in-memory database has none)."""
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(str(url.database))


def copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (its WAL included) through SQLite's online
    backup API; ``target`` is created 0600 and must not exist."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    os.close(fd)
    # mode=ro: the copy never writes to the source; the backup reads it page by page under
    # SQLite's own locking, so a writer at the same time is either in or not, never half in.
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(target)
    try:
        with dst:
            src.backup(dst)
        # A plain file, not WAL: the copy is one self-contained file.
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        dst.close()
        src.close()


def backup_sqlite(db_url: str) -> Path | None:
    """Copy a SQLite database to ``<file>.<timestamp>`` before migrating it (JupyterHub's
    ``upgrade-db`` names its backups so); None for other databases (the operator backs those
    up: ``learnhub backup`` runs ``pg_dump``)."""
    path = sqlite_path(db_url)
    if path is None or not path.exists():
        return None
    stamp = datetime.now(UTC).strftime("%Y-%m-%d-%H%M%S")
    target = path.with_name(f"{path.name}.{stamp}")
    for n in range(1, 100):
        if not target.exists():
            break
        target = path.with_name(f"{path.name}.{stamp}.{n}")
    copy_sqlite(path, target)
    log.info("backed up before migrating", extra={"database": str(path), "backup": str(target)})
    return target


def _advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock`` from a lock's name."""
    return int.from_bytes(
        hashlib.sha256(f"learnhub-migrate-{name}".encode()).digest()[:8], "big", signed=True
    )


@contextlib.contextmanager
def migration_lock(
    db_url: str, name: str, *, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the migration lock of the database at ``db_url`` (one per ``name``).

    SQLite: ``flock`` on ``<file>.upgrade-lock`` beside the database (in the data folder).
    PostgreSQL: a session-level ``pg_advisory_lock``, released when the block ends or the
    connection drops. ``on_wait`` is told when another holder makes this one wait.
    """
    path = sqlite_path(db_url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = path.with_name(path.name + ".upgrade-lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait:
                    on_wait(f"waiting for another migration of {path} to finish")
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock
        return
    if make_url(db_url).get_backend_name() != "postgresql":
        raise LearnHubError(
            f"{describe(db_url)}: migrations can be locked on SQLite and PostgreSQL only"
        )
    key = _advisory_key(name)
    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            got = connection.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
            if not got.scalar():
                if on_wait:
                    on_wait(f"waiting for another migration of {describe(db_url)} to finish")
                connection.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                connection.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        engine.dispose()
