"""``learnhub upgrade``: migrate both databases explicitly, and refuse to run on old ones.

Two databases have schemas: JupyterHub's own (its Alembic migrations, ``jupyterhub upgrade-db``)
and LearnHub's (``hub/store/migrations``). An upgrade of the code may move either. The operator
stops the platform, installs the new code, runs ``learnhub upgrade``, and starts it again:

- JupyterHub's database is migrated as ``jupyterhub upgrade-db`` does it
  (``jupyterhub.dbutil.upgrade_if_needed``), by root, whose file it is;
- LearnHub's as the service's account, whose file that is (:mod:`hub.privilege`);
- each under its migration lock (:func:`hub.store.revisions.migration_lock`), so two upgrades at
  once run one after the other, and a SQLite file is first copied beside itself with SQLite's
  online backup API (JupyterHub's own backup is a plain file copy, which would miss a WAL).

The Hub refuses to start on a database behind the code (:func:`refuse_unmigrated`, called from
``jupyterhub_config.py``; JupyterHub itself also refuses its own database with "run
`jupyterhub upgrade-db`", but only after loading the config, and its managed service would be
restarted in a loop), and so do the service and each command that opens LearnHub's database
(:func:`hub.store.revisions.ensure_store`). Brand-new empty databases are not "behind": both are
created at their heads on first use.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alembic.script import ScriptDirectory

from hub.errors import LearnHubError
from hub.privilege import ServiceAccount, drop_privileges, prepare_data_dir, service_account
from hub.settings import Settings
from hub.store.database import create_engine
from hub.store.revisions import (
    Migration,
    Revision,
    backup_sqlite,
    check_store,
    describe,
    migrate_store,
    migration_lock,
    read_revision,
    refusal,
    sqlite_path,
)

log = logging.getLogger("learnhub.upgrade")


@dataclass(frozen=True)
class Upgraded:
    """One database's outcome, for the operator."""

    what: str
    database: str
    migration: Migration | None

    def line(self) -> str:
        """One line: what moved, or that nothing had to."""
        m = self.migration
        if m is None:
            return f"{self.what} ({self.database}): none yet; created at the first start"
        if not m.changed:
            return f"{self.what} ({self.database}): at {m.after}, nothing to do"
        if m.before is None:
            return f"{self.what} ({self.database}): created at {m.after}"
        backup = f"; backup: {m.backup}" if m.backup else ""
        return f"{self.what} ({self.database}): migrated {m.before} -> {m.after}{backup}"


def hub_db_revision(db_url: str) -> Revision:
    """Where JupyterHub's database is, against the JupyterHub installed here."""
    from jupyterhub import dbutil, orm

    engine = create_engine(db_url)
    try:
        return read_revision(
            engine,
            scripts=ScriptDirectory(dbutil.ALEMBIC_DIR),
            tables=set(orm.Base.metadata.tables),
            version_table="alembic_version",
        )
    finally:
        engine.dispose()


def _hub_db_exists(db_url: str) -> bool:
    path = sqlite_path(db_url)
    return path is None or path.exists()


def check_hub_db(db_url: str) -> None:
    """Refuse JupyterHub's database when it is behind (or ahead of) the JupyterHub here.

    An absent or empty one passes: JupyterHub stamps a new database with its head itself.
    """
    if not _hub_db_exists(db_url):
        return
    revision = hub_db_revision(db_url)
    if not (revision.empty or revision.at_head):
        raise refusal("JupyterHub's database", db_url, revision)


def migrate_hub_db(db_url: str, *, on_wait: Callable[[str], None] | None = None) -> Migration:
    """Migrate JupyterHub's database as ``jupyterhub upgrade-db`` does, locked, after a backup."""
    from jupyterhub import dbutil

    with migration_lock(db_url, "jupyterhub", on_wait=on_wait):
        revision = hub_db_revision(db_url)
        if revision.unknown:
            raise refusal("JupyterHub's database", db_url, revision)
        if revision.empty or revision.at_head:
            return Migration(before=revision.current, after=revision.head, backup=None)
        backup = backup_sqlite(db_url)
        # backup=False: done above through SQLite's backup API (theirs copies the file alone).
        dbutil.upgrade_if_needed(db_url, backup=False, log=log)
    log.info(
        "migrated JupyterHub's database",
        extra={"before": revision.current, "revision": revision.head, "outcome": "migrated"},
    )
    return Migration(before=revision.current, after=revision.head, backup=backup)


def running_hub(settings: Settings) -> int | None:
    """The process id of a JupyterHub running on this data folder (its pid file), or None."""
    try:
        pid = int((settings.data_dir / "jupyterhub.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    # A stale pid file may name an unrelated process that got the same id.
    return pid if b"jupyterhub" in cmdline else None


def call_as(account: ServiceAccount | None, work: Callable[[], str]) -> str:
    """``work()`` as ``account`` in a child process (here when None); return what it returns.

    A :class:`LearnHubError` in the child comes back as the same one-line error; anything else
    prints its traceback and fails with a message naming the account.
    """
    if account is None:
        return work()
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        os.close(read_end)
        code = 1
        try:
            drop_privileges(account)
            answer: dict[str, str] = {"ok": work()}
            code = 0
        except LearnHubError as exc:
            answer = {"error": str(exc)}
        except BaseException:
            traceback.print_exc()
            answer = {}
        finally:
            with os.fdopen(write_end, "w") as pipe:
                pipe.write(json.dumps(answer))
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    answer = json.loads(text) if text else {}
    if "ok" in answer:
        return answer["ok"]
    if "error" in answer:
        raise LearnHubError(answer["error"])
    raise LearnHubError(f"the part run as {account.name} failed (see the error above)")


def refuse_unmigrated(settings: Settings) -> None:
    """For the Hub's start: refuse when either database is behind the code, naming
    ``learnhub upgrade``. Run after :func:`hub.privilege.prepare_data_dir`."""
    check_hub_db(settings.hub_db_url)
    url = settings.learnhub_db_url
    call_as(service_account(settings), lambda: str(check_store(url).current))


def upgrade_platform(
    settings: Settings, *, on_wait: Callable[[str], None] | None = None
) -> list[str]:
    """Migrate JupyterHub's database (as the caller) and LearnHub's (as the service's account);
    return one line per database saying what happened.

    Refused while a Hub runs on this data folder: an older Hub and service must not find the
    schema changed under them.
    """
    pid = running_hub(settings)
    if pid is not None:
        raise LearnHubError(
            f"the Hub is running on {settings.data_dir} (pid {pid}): stop the platform first "
            "(an older Hub and service must not run on a migrated database), then run "
            "`learnhub upgrade` again"
        )
    account = prepare_data_dir(settings)
    hub_url = settings.hub_db_url
    hub = migrate_hub_db(hub_url, on_wait=on_wait) if _hub_db_exists(hub_url) else None
    url = settings.learnhub_db_url

    def migrate_learnhub() -> str:
        migration = migrate_store(url, on_wait=on_wait)
        return Upgraded("LearnHub's database", describe(url), migration).line()

    return [
        Upgraded("JupyterHub's database", describe(hub_url), hub).line(),
        call_as(account, migrate_learnhub),
    ]
