"""Create a course's nbgrader gradebook without nbgrader shelling out to ``alembic``.

nbgrader's ``Gradebook`` stamps a new database with its Alembic revision by running the
``alembic`` command found on ``PATH`` (``nbgrader.api.get_alembic_version``). The command lives
in LearnHub's virtual environment, whose ``bin`` is not on ``PATH`` when ``learnhub`` is
started by its absolute path (cron, systemd, another shell): every first command of a course
then failed with ``FileNotFoundError: 'alembic'``. Here the tables and the stamp are written
in-process, reading the revision from nbgrader's own migration scripts; nbgrader then opens an
existing gradebook and runs nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from nbgrader.api import Base
from nbgrader.dbutil import ALEMBIC_DIR


def nbgrader_schema_revision() -> str:
    """The Alembic head of the installed nbgrader (what ``alembic heads`` prints)."""
    head = ScriptDirectory(ALEMBIC_DIR).get_current_head()
    if head is None:
        raise RuntimeError(f"nbgrader's migrations in {ALEMBIC_DIR} have no head")
    return str(head)


def ensure_gradebook(db_url: str) -> bool:
    """Create the gradebook at ``db_url`` as nbgrader would, if it has no tables yet.

    Returns True when it was created. An existing gradebook is left as it is.
    """
    engine = sa.create_engine(db_url, future=True)
    try:
        if sa.inspect(engine).get_table_names():
            return False
        revision = nbgrader_schema_revision()
        Base.metadata.create_all(bind=engine)
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
            conn.execute(sa.text("INSERT INTO alembic_version VALUES (:v)"), {"v": revision})
        return True
    finally:
        engine.dispose()
