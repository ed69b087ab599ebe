"""`learnhub restore` refuses what it must before it writes anything: a backup that does not
match its manifest, a backup newer than the code, a data folder that is not empty.

No hub: a stopped platform's data folder made by `learnhub upgrade`'s own code, backed up and
restored in this process (the service's part still by the service's account when root).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
import yaml

from harness.hub import let_service_user_through
from hub.backup import backup, restore
from hub.errors import LearnHubError
from hub.settings import Settings, load_settings
from hub.store.revisions import learnhub_head
from hub.upgrade import upgrade_platform
from tests.billing.conftest import postgres_server
from tests.harness import ROOT

__all__ = ["postgres_server"]  # the session's PostgreSQL cluster, shared with tests/billing


def _settings(workdir: Path, data_dir: Path) -> Settings:
    path = workdir / f"{data_dir.name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "mode": "demo",
                "courses_dir": str(ROOT / "courses"),
                "hub": {"data_dir": str(data_dir)},
                "spawner": {"backend": "local"},
            }
        )
    )
    return load_settings(path, {})


@pytest.fixture
def backed_up(tmp_path: Path) -> tuple[Path, Path]:
    """A backup of a small platform (LearnHub's database, a gradebook, secrets beside)."""
    workdir = tmp_path / "site"
    workdir.mkdir()
    let_service_user_through(workdir)
    settings = _settings(workdir, workdir / "var")
    upgrade_platform(settings, on_wait=print)
    gradebook = settings.grader_dir / "python-foundations" / "gradebook.db"
    gradebook.parent.mkdir(parents=True)
    with sqlite3.connect(gradebook) as db:
        db.execute("CREATE TABLE grade (student TEXT, score REAL)")
        db.execute("INSERT INTO grade VALUES ('ada', 7.5)")
    db.close()
    (settings.data_dir / "jupyterhub_cookie_secret").write_text("not to be copied")
    dest = tmp_path / "backup"
    backup(settings, dest, say=print)
    return workdir, dest


def test_restore_rebuilds_and_refuses_what_it_must(backed_up: tuple[Path, Path]) -> None:
    workdir, dest = backed_up
    manifest = json.loads((dest / "manifest.json").read_text())
    paths = {entry["path"] for entry in manifest["files"]}
    assert "data/jupyterhub_cookie_secret" not in paths
    assert "data/service/learnhub.sqlite" in paths

    fresh = _settings(workdir, workdir / "fresh")
    restore(fresh, dest, say=print)
    with sqlite3.connect(fresh.grader_dir / "python-foundations" / "gradebook.db") as db:
        assert db.execute("SELECT student, score FROM grade").fetchall() == [("ada", 7.5)]
    db.close()
    with pytest.raises(LearnHubError, match="the data folder is not empty"):
        restore(fresh, dest, say=print)

    # One changed byte anywhere: nothing is written.
    other = _settings(workdir, workdir / "other")
    gradebook = dest / "data" / "grader" / "python-foundations" / "gradebook.db"
    gradebook.write_bytes(gradebook.read_bytes() + b"x")
    with pytest.raises(LearnHubError, match=r"gradebook\.db: checksum differs"):
        restore(other, dest, say=print)
    assert not other.data_dir.exists()

    # A backup a newer LearnHub made: refused before anything else.
    manifest["alembic"]["learnhub"] = "0099_from_the_future"
    (dest / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(LearnHubError, match="0099_from_the_future, newer than this LearnHub"):
        restore(other, dest, say=print)


def test_postgresql_is_dumped_and_restored(tmp_path: Path, postgres_server: str) -> None:
    """LearnHub's database on PostgreSQL: `pg_dump` in the backup, `pg_restore` into an empty
    database on restore (a database that is not empty is refused)."""
    workdir = tmp_path / "site"
    workdir.mkdir()
    let_service_user_through(workdir)

    def new_database() -> str:
        name = "bk_" + uuid.uuid4().hex[:12]
        with psycopg.connect(postgres_server.replace("+psycopg", "") + "/postgres") as conn:
            conn.autocommit = True
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"{postgres_server}/{name}"

    def settings_for(data_dir: Path, url: str) -> Settings:
        settings = _settings(workdir, data_dir)
        return settings.model_copy(
            update={"database": settings.database.model_copy(update={"learnhub_url": url})}
        )

    source_url = new_database()
    source = settings_for(workdir / "pg-var", source_url)
    upgrade_platform(source, on_wait=print)
    engine = sa.create_engine(source_url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO entitlements (username, course_id, source, status, created_at, "
                "updated_at) VALUES ('ada', 'python-foundations', 'manual', 'active', now(), now())"
            )
        )
    engine.dispose()
    dest = tmp_path / "pg-backup"
    manifest = backup(source, dest, say=print)
    assert manifest["databases"]["learnhub"] == "postgresql"
    assert (dest / "postgres" / "learnhub.dump").stat().st_size > 0

    with pytest.raises(LearnHubError, match="not empty"):
        restore(settings_for(workdir / "pg-fresh-1", source_url), dest, say=print)
    target_url = new_database()
    restore(settings_for(workdir / "pg-fresh-2", target_url), dest, say=print)
    engine = sa.create_engine(target_url)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT username, course_id FROM entitlements")).all()
        revision = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    assert [tuple(r) for r in rows] == [("ada", "python-foundations")]
    assert revision == learnhub_head()
