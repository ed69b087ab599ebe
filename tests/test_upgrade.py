"""`learnhub upgrade`: old databases are refused everywhere until it runs, then migrated intact.

The old LearnHub database is the schema commit 307874f shipped: its newest migration was
``0008_event_queue`` (``git show 307874f:hub/store/migrations/versions``), so Alembic builds it
here at that revision and a purchase is written into it with that schema's columns. JupyterHub
was the same version at 307874f, so its database then was already at JupyterHub's head; one
JupyterHub release older is made by Alembic's own downgrade of its newest migration.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
import yaml

from harness.hub import let_service_user_through as _let_through
from hub.settings import load_settings
from hub.store import upgrade
from hub.store.revisions import StoreRevisionError, check_store, learnhub_head, migration_lock
from hub.upgrade import hub_db_revision, upgrade_platform
from tests.billing.conftest import postgres_server
from tests.harness import ROOT, start_hub_once

__all__ = ["postgres_server"]  # the session's PostgreSQL cluster, shared with tests/billing

#: The newest LearnHub migration at commit 307874f.
REVISION_AT_307874F = "0008_event_queue"
NOW = "2026-11-26 09:00:00"


@dataclass
class Platform:
    """A stopped platform's settings file and databases, as an operator has them."""

    workdir: Path
    data_dir: Path
    learnhub_url: str

    @property
    def config(self) -> Path:
        return self.workdir / "learnhub.yaml"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEARNHUB_")}
        env["LEARNHUB_CONFIG"] = str(self.config)
        env["LEARNHUB_CLI_TOKEN"] = "operator-token-for-the-test"
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def learnhub(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hub.cli", *args],
            env=self.env(),
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def start_learnhub(self, *args: str, stderr: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "hub.cli", *args],
            env=self.env(),
            cwd=self.workdir,
            stdout=subprocess.PIPE,
            stderr=stderr.open("w"),
            text=True,
        )

    def revision(self) -> str | None:
        engine = sa.create_engine(self.learnhub_url)
        try:
            with engine.connect() as connection:
                return connection.execute(
                    sa.text("SELECT version_num FROM alembic_version")
                ).scalar()
        finally:
            engine.dispose()


def _old_learnhub_database(url: str) -> None:
    """LearnHub's database as 307874f left it, with a purchase in it."""
    upgrade(url, REVISION_AT_307874F)
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO entitlements (username, course_id, source, status, "
                "stripe_checkout_session_id, created_at, updated_at) VALUES "
                "('ada', 'python-foundations', 'purchase', 'active', 'cs_test_307874f', :t, :t)"
            ),
            {"t": NOW},
        )
        connection.execute(
            sa.text(
                "INSERT INTO checkout_sessions (session_id, username, course_id, mode, status, "
                "created_at, updated_at) VALUES ('cs_test_307874f', 'ada', 'python-foundations', "
                "'payment', 'complete', :t, :t)"
            ),
            {"t": NOW},
        )
    engine.dispose()


def _purchase_survived(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT username, course_id, status FROM entitlements")
            ).all()
            sessions = connection.execute(
                sa.text("SELECT session_id, status, amount FROM checkout_sessions")
            ).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [("ada", "python-foundations", "active")]
    # 0009 added `amount` to checkout_sessions (a table rebuild on SQLite): the row is still there.
    assert [tuple(s) for s in sessions] == [("cs_test_307874f", "complete", None)]


def _older_jupyterhub_database(url: str) -> None:
    """JupyterHub's database one JupyterHub release back, with a member in it."""
    import alembic.command
    import alembic.config
    from jupyterhub import dbutil, orm

    session = orm.new_session_factory(url)()
    session.add(orm.User(name="ada"))
    session.commit()
    session.close()
    with dbutil._temp_alembic_ini(url) as ini:
        alembic.command.downgrade(alembic.config.Config(ini), "-1")


@pytest.fixture(params=["sqlite", "postgresql"])
def platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Platform]:
    """A stopped platform whose databases were made by older code."""
    workdir = tmp_path / "site"
    data_dir = workdir / "var"
    (data_dir / "service").mkdir(parents=True)
    settings: dict[str, object] = {
        "mode": "demo",
        "courses_dir": str(ROOT / "courses"),
        "hub": {"data_dir": str(data_dir)},
        # No Docker network to check: the Hub's start gets as far as its databases at once.
        "spawner": {"backend": "local"},
    }
    if request.param == "sqlite":
        learnhub_url = f"sqlite:///{data_dir / 'service' / 'learnhub.sqlite'}"
    else:
        server: str = request.getfixturevalue("postgres_server")
        name = "up_" + uuid.uuid4().hex[:12]
        with psycopg.connect(server.replace("+psycopg", "") + "/postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        learnhub_url = f"{server}/{name}"
        settings["database"] = {"learnhub_url": learnhub_url}
    (workdir / "learnhub.yaml").write_text(yaml.safe_dump(settings))
    # A root run drops to the service's account for LearnHub's database: let it reach the site.
    _let_through(workdir)
    _old_learnhub_database(learnhub_url)
    yield Platform(workdir=workdir, data_dir=data_dir, learnhub_url=learnhub_url)


@pytest.mark.parametrize("platform", ["sqlite"], indirect=True)
def test_old_databases_are_refused_then_upgraded_intact(platform: Platform) -> None:
    """Every door refuses; `learnhub upgrade` migrates both databases; nothing is lost."""
    hub_url = f"sqlite:///{platform.data_dir / 'jupyterhub.sqlite'}"
    _older_jupyterhub_database(hub_url)
    old_hub = hub_db_revision(hub_url)
    assert not old_hub.at_head

    # Every door refuses the old database, with one line naming the remedy.
    granted = platform.learnhub("grant", "ada", "algorithms-in-python")
    assert granted.returncode == 2, granted.stderr
    assert granted.stderr.count("\n") == 1, granted.stderr
    assert "LearnHub's database" in granted.stderr
    assert f"at {REVISION_AT_307874F}, behind" in granted.stderr
    assert "run `learnhub upgrade`" in granted.stderr

    service = subprocess.run(
        [sys.executable, "-m", "hub.service"],
        env=platform.env(),
        cwd=platform.workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert service.returncode == 2, service.stderr
    assert "LearnHub service cannot start" in service.stderr
    assert "run `learnhub upgrade`" in service.stderr
    assert "Traceback" not in service.stderr

    hub = start_hub_once(platform.env(), platform.workdir)
    assert hub.returncode != 0
    # JupyterHub's database is checked first: the Hub names LearnHub's command for it too.
    assert "JupyterHub's database" in hub.stderr
    assert f"at {old_hub.current}, behind" in hub.stderr
    assert "run `learnhub upgrade`" in hub.stderr
    assert platform.revision() == REVISION_AT_307874F  # nothing migrated on the way

    upgraded = platform.learnhub("upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"migrated {old_hub.current} -> {old_hub.head}" in upgraded.stdout
    assert f"migrated {REVISION_AT_307874F} -> {learnhub_head()}" in upgraded.stdout
    assert platform.revision() == learnhub_head()
    assert hub_db_revision(hub_url).at_head
    _purchase_survived(platform.learnhub_url)
    engine = sa.create_engine(hub_url)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT name FROM users")).scalars().all() == ["ada"]
    engine.dispose()
    # SQLite files were copied before migrating, at the revision they had.
    backups = sorted(platform.data_dir.glob("jupyterhub.sqlite.20*"))
    assert len(backups) == 1
    assert hub_db_revision(f"sqlite:///{backups[0]}").current == old_hub.current
    if platform.learnhub_url.startswith("sqlite"):
        (backup,) = (platform.data_dir / "service").glob("learnhub.sqlite.20*")
        assert Platform(platform.workdir, platform.data_dir, f"sqlite:///{backup}").revision() == (
            REVISION_AT_307874F
        )

    # A second run finds nothing to do (in this process: the same code, one start-up cheaper).
    again = upgrade_platform(load_settings(platform.config, {}))
    assert [line.endswith("nothing to do") for line in again] == [True, True], again
    assert check_store(platform.learnhub_url).at_head  # what every command checks first


@pytest.mark.parametrize("platform", ["postgresql"], indirect=True)
def test_postgresql_database_is_refused_then_upgraded_intact(platform: Platform) -> None:
    """The same on PostgreSQL (pg_advisory_lock; no file backup: `learnhub backup` dumps it)."""
    # What every command checks first (the CLI's refusal itself is shown on SQLite above).
    with pytest.raises(StoreRevisionError, match=f"at {REVISION_AT_307874F}, behind"):
        check_store(platform.learnhub_url)
    upgraded = platform.learnhub("upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"migrated {REVISION_AT_307874F} -> {learnhub_head()}" in upgraded.stdout
    assert platform.revision() == learnhub_head()
    _purchase_survived(platform.learnhub_url)


def test_two_upgrades_at_once_take_turns(platform: Platform, tmp_path: Path) -> None:
    # Hold the migration lock as a third upgrade would, so both commands meet it for certain.
    lock_file = platform.data_dir / "service" / "learnhub.sqlite.upgrade-lock"
    with migration_lock(platform.learnhub_url, "learnhub"):
        if os.geteuid() == 0 and platform.learnhub_url.startswith("sqlite"):
            # The service's account takes this lock in its own folder: the file is its.
            os.chown(lock_file, *_service_ids())
        first = platform.start_learnhub("upgrade", stderr=tmp_path / "first.err")
        second = platform.start_learnhub("upgrade", stderr=tmp_path / "second.err")
        for name in ("first.err", "second.err"):
            _wait_for_text(tmp_path / name, "waiting for another migration", [first, second])
    outputs = [proc.communicate(timeout=120)[0] for proc in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], [
        (tmp_path / n).read_text() for n in ("first.err", "second.err")
    ]
    migrated = [out for out in outputs if f"migrated {REVISION_AT_307874F}" in out]
    untouched = [out for out in outputs if f"LearnHub's database ({_shown(platform)}): at " in out]
    assert len(migrated) == 1 and len(untouched) == 1, outputs
    assert platform.revision() == learnhub_head()
    _purchase_survived(platform.learnhub_url)


def _shown(platform: Platform) -> str:
    from hub.store.revisions import describe

    return describe(platform.learnhub_url)


def _service_ids() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam("learnhub")
    return entry.pw_uid, entry.pw_gid


def _wait_for_text(path: Path, text: str, procs: list[subprocess.Popen[str]]) -> None:
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if text in path.read_text():
            return
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"an upgrade ended early: {path.read_text()}")
        time.sleep(0.05)
    raise AssertionError(f"{path}: never said {text!r}: {path.read_text()}")
