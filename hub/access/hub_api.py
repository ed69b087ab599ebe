"""LearnHub's additions to the Hub's REST API (they run inside the Hub process).

``POST /hub/api/learnhub/groups/<group>/users`` and ``DELETE`` on the same path change a
group's members like JupyterHub's own ``/hub/api/groups/<group>/users``, with the same scope
(``groups``, which a ``groups!group=<group>`` filter can narrow), the same body
(``{"users": [...]}``), the same 400 for an unknown user and the same database writes through
the Hub's own ORM session. What differs is the cost:

- JupyterHub looks each name up with its own query, and each query also loads the user's
  roles, groups and shares (one more query each): four queries per user. In a burst of
  purchases that was 91 % of the Hub's CPU, about 4 ms per learner added
  (``benchmarks/edge.py``, docs/benchmarks.md). Here the names are looked up together, a few
  hundred per query.
- JupyterHub answers with the whole group, every member's name, which grows with the course.
  Here the answer names only who was added (or removed) and who already was (or was not).

The ORM relationships are changed from the users' side (``user.groups``), so the Hub's own
objects, from which it computes each user's scopes, see the change at once, as they do after
JupyterHub's own handler. Only LearnHub's service calls these (:class:`HubClient`); every
other Hub API client can keep using JupyterHub's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jupyterhub import orm
from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.scopes import needs_scope
from tornado import web

#: Names per look-up query: SQLite allows 32766 bound parameters, older builds 999.
LOOKUP_CHUNK = 500


def _chunks(names: list[str], size: int = LOOKUP_CHUNK) -> Iterator[list[str]]:
    for start in range(0, len(names), size):
        yield names[start : start + size]


class GroupMembersHandler(APIHandler):  # type: ignore[misc]
    """``/hub/api/learnhub/groups/<group>/users``: add (POST) or remove (DELETE) members."""

    def _group_and_users(self, group_name: str) -> tuple[Any, list[Any]]:
        group = orm.Group.find(self.db, name=group_name)
        if group is None:
            raise web.HTTPError(404, f"No such group: {group_name}")
        data = self.get_json_body()
        names = data.get("users") if isinstance(data, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise web.HTTPError(400, 'the body must be {"users": [name, ...]}')
        wanted = sorted({self.authenticator.normalize_username(name) for name in names})
        users = [
            user
            for chunk in _chunks(wanted)
            for user in self.db.query(orm.User).filter(orm.User.name.in_(chunk))
        ]
        missing = sorted(set(wanted) - {user.name for user in users})
        if missing:
            # JupyterHub's own handler answers the same for the first unknown name.
            raise web.HTTPError(400, f"No such user: {missing[0]}")
        return group, users

    @needs_scope("groups")  # type: ignore[untyped-decorator]
    def post(self, group_name: str) -> None:
        """Add the named users; those already in the group are left as they are."""
        group, users = self._group_and_users(group_name)
        added = []
        for user in users:
            if group not in user.groups:
                user.groups.append(group)
                added.append(user.name)
        self.db.commit()
        self.log.info("learnhub: %i users added to group %s", len(added), group_name)
        already = sorted({user.name for user in users} - set(added))
        self.finish({"name": group_name, "added": added, "already": already})

    @needs_scope("groups")  # type: ignore[untyped-decorator]
    def delete(self, group_name: str) -> None:
        """Remove the named users; those not in the group are left as they are."""
        group, users = self._group_and_users(group_name)
        removed = []
        for user in users:
            if group in user.groups:
                user.groups.remove(group)
                removed.append(user.name)
        self.db.commit()
        self.log.info("learnhub: %i users removed from group %s", len(removed), group_name)
        absent = sorted({user.name for user in users} - set(removed))
        self.finish({"name": group_name, "removed": removed, "absent": absent})


#: Handlers every LearnHub authenticator adds (paths relative to the Hub's prefix).
HUB_API_HANDLERS: list[tuple[str, Any]] = [
    (r"/api/learnhub/groups/([^/]+)/users", GroupMembersHandler),
]
