"""Run inside the learner image (by tests/test_images.py): the patched jupyterhub package keeps
the Hub's ORM out of the single-user server and still does its job. Prints one JSON object."""

import asyncio
import json
import logging
import sys

import jupyterhub.singleuser.extension  # noqa: F401 - what jupyterhub-singleuser imports
from jupyterhub import log, scopes, utils

HUB_SIDE = ("sqlalchemy", "alembic", "jupyterhub.orm", "jupyterhub.metrics", "jupyterhub.handlers")
seen: dict[str, object] = {"hub_side_imported": sorted(m for m in HUB_SIDE if m in sys.modules)}

# Scope intersection, as HubAuth uses it (no database in a single-user server).
seen["intersection"] = sorted(
    scopes._intersect_expanded_scopes({"read:users!user=ada", "access:servers"}, {"read:users"})
)
# A lazy module resolves on first use.
seen["orm_user_table"] = scopes.orm.User.__tablename__

# The request log: one line per request, at the expected level.
records: list[logging.LogRecord] = []
handler = logging.Handler()
handler.emit = records.append  # type: ignore[method-assign]
log.access_log.addHandler(handler)
log.access_log.setLevel(logging.DEBUG)


class Request:
    uri = "/user/ada/c/api/status?token=secret"
    method = "GET"
    remote_ip = "10.0.0.1"

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}

    def request_time(self) -> float:
        return 0.01


class Handler:
    def __init__(self) -> None:
        self.request = Request()
        self.current_user = {"name": "ada"}
        self._headers: dict[str, str] = {}

    def get_status(self) -> int:
        return 200


log.log_request(Handler())
seen["log"] = [(r.levelname, r.getMessage()) for r in records]


# catch_db_error still rolls back on a database error (where the Hub uses it).
class Owner:
    rolled_back = False
    log = logging.getLogger("probe")

    class db:  # stands for a SQLAlchemy session
        @staticmethod
        def rollback() -> None:
            Owner.rolled_back = True

    @utils.catch_db_error
    def failing(self) -> None:
        from sqlalchemy.exc import OperationalError

        raise OperationalError("SELECT 1", {}, Exception("database is locked"))


asyncio.run(Owner().failing())
seen["rolled_back"] = Owner.rolled_back
print(json.dumps(seen))
