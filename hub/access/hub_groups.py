"""The Hub's groups: the only code that changes JupyterHub group membership.

Access to a course is membership of its JupyterHub group (`course-<id>` for learners,
`instructors-<id>` for instructors). :func:`load_desired_membership` reads who *should* be in them
(entitlements in our database, instructors from each `course.yaml`); :func:`apply_membership`
makes the Hub's groups match, through the Hub's REST API with a narrowly scoped token, and stops
the course server of anyone it removes (their volume, and so their work, is kept).

Applying a desired state is idempotent, so it is safe to run on every change and periodically: a
missed call heals itself on the next run. :func:`make_access_sync` wires the two together for the
service, sharing runs between concurrent callers (:class:`CoalescingSync`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import httpx

from hub.courses import Catalog, course_id_from_group, instructor_group
from hub.entitlements import desired_membership
from hub.errors import HubAPIError
from hub.settings import Settings

if TYPE_CHECKING:
    from hub.store import Database

log = logging.getLogger("learnhub.access")

#: Scopes the access service needs, and no more.
ACCESS_SCOPES = [
    "list:users",
    "read:users",
    "list:groups",
    "read:groups",
    "admin:groups",
    "groups",
    "servers",
]

#: JupyterHub's media type for paginated lists: ``{"items": [...], "_pagination": {...}}``.
PAGINATION_MEDIA_TYPE = "application/jupyterhub-pagination+json"
#: The page size asked for; the Hub lowers it to its ``api_page_max_limit`` (200 by default).
PAGE_LIMIT = 200
#: Pages one listing follows at most (200,000 items at the default size): a Hub that never
#: stops answering "next" cannot keep a sync running forever.
MAX_PAGES = 1000


class HubClient:
    """A small async client of the JupyterHub REST API (`/hub/api`)."""

    def __init__(
        self,
        api_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._client = httpx.AsyncClient(
            headers={"Authorization": f"token {token}"}, timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def __aenter__(self) -> HubClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        ok: Iterable[int] = (200, 201, 202, 204),
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a request; raise :class:`HubAPIError` on an unexpected status."""
        url = f"{self.api_url}{path}"
        try:
            response = await self._client.request(method, url, json=json, headers=headers)
        except httpx.HTTPError as exc:
            # A timeout's own text is empty: name its kind rather than print nothing.
            reason = str(exc) or type(exc).__name__
            raise HubAPIError(f"JupyterHub API unreachable at {self.api_url}: {reason}") from exc
        if response.status_code not in set(ok):
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            raise HubAPIError(
                f"{method} {path} -> {response.status_code}: {message}",
                status=response.status_code,
            )
        return response

    async def list_all(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        last_wanted: Callable[[dict[str, Any]], bool] | None = None,
    ) -> list[dict[str, Any]]:
        """Every item of a paginated Hub list (``/users``, ``/groups``), page by page.

        JupyterHub serves at most ``api_page_max_limit`` items a request (200 by default) and
        silently ignores a larger ``limit``, so one request with ``limit=10000`` saw only the
        first 200 groups: a course past them kept revoked members. With JupyterHub's pagination
        media type each page says where the next one starts (``_pagination.next``); this follows
        it until there is none, at most :data:`MAX_PAGES` times.

        With ``last_wanted``, a listing sorted so that the wanted items come first stops after
        the page holding the first item that is not wanted (its items are all returned).
        """
        items: list[dict[str, Any]] = []
        offset = 0
        for _ in range(MAX_PAGES):
            query = urlencode({**(params or {}), "offset": offset, "limit": PAGE_LIMIT})
            response = await self.request(
                "GET", f"{path}?{query}", headers={"Accept": PAGINATION_MEDIA_TYPE}
            )
            page = response.json()
            if not isinstance(page, dict) or not isinstance(page.get("_pagination"), dict):
                # An answer without page information would be counted as the whole list.
                raise HubAPIError(
                    f"GET {path} did not answer with pages ({PAGINATION_MEDIA_TYPE}): "
                    "LearnHub needs JupyterHub 2.0 or newer; upgrade the Hub"
                )
            found = page.get("items") or []
            items.extend(found)
            following = page["_pagination"].get("next")
            if last_wanted is not None and not all(last_wanted(item) for item in found):
                return items
            if not following:
                return items
            next_offset = int(following["offset"])
            if next_offset <= offset:
                raise HubAPIError(
                    f"GET {path}: the Hub's next page (offset {next_offset}) does not move past "
                    f"offset {offset}; check the Hub's api_page_max_limit (it must be 1 or more)"
                )
            offset = next_offset
        raise HubAPIError(
            f"GET {path}: more than {MAX_PAGES} pages of {PAGE_LIMIT}; raise the Hub's "
            "api_page_max_limit, or LearnHub's MAX_PAGES if the Hub really lists that many"
        )

    async def groups(self) -> dict[str, set[str]]:
        """All groups and their members (every page)."""
        return {g["name"]: set(g["users"]) for g in await self.list_all("/groups")}

    async def list_users(self, *, state: str | None = None) -> list[dict[str, Any]]:
        """Every user model (every page); ``state="active"``: only users with a server."""
        return await self.list_all("/users", {"state": state} if state else None)

    async def users_active_since(self, since: datetime) -> list[dict[str, Any]]:
        """Users whose ``last_activity`` is at or after ``since`` (maybe a few more).

        Pages of ``/users`` sorted by most recent activity, up to the first older user: the
        recently active members, not every member. Reading every user took 50 requests of
        about 0.4 s each at 10,000 members (benchmarks/scale.py), on every operator dashboard
        view.
        """

        def recent(user: dict[str, Any]) -> bool:
            seen = parse_hub_time(user.get("last_activity"))
            return seen is not None and seen >= since

        return await self.list_all("/users", {"sort": "-last_activity"}, last_wanted=recent)

    async def user(self, name: str) -> dict[str, Any] | None:
        """The user model, or None when the user does not exist."""
        response = await self.request("GET", f"/users/{quote(name, safe='')}", ok=(200, 404))
        return None if response.status_code == 404 else dict(response.json())

    async def create_group(self, group: str) -> None:
        """Create a group (existing groups are fine)."""
        await self.request("POST", f"/groups/{quote(group, safe='')}", ok=(201, 409))

    async def add_members(self, group: str, users: Iterable[str]) -> None:
        """Add users to a group.

        Through LearnHub's group endpoint in the Hub (:mod:`hub.access.hub_api`), not
        JupyterHub's ``/groups/<group>/users``: the same change under the same scope, but one
        look-up for all the names instead of four queries per user, and an answer that does not
        list the whole course.
        """
        await self.request(
            "POST", f"/learnhub/groups/{quote(group, safe='')}/users", json={"users": sorted(users)}
        )

    async def remove_members(self, group: str, users: Iterable[str]) -> None:
        """Remove users from a group (LearnHub's group endpoint, as :meth:`add_members`)."""
        await self.request(
            "DELETE",
            f"/learnhub/groups/{quote(group, safe='')}/users",
            json={"users": sorted(users)},
        )

    async def stop_server(self, user: str, server_name: str) -> None:
        """Stop a user's named server (a server that is not running is fine)."""
        await self.request(
            "DELETE",
            f"/users/{quote(user, safe='')}/servers/{quote(server_name, safe='')}",
            ok=(202, 204, 400, 404),
        )


def parse_hub_time(raw: object) -> datetime | None:
    """A time as the Hub API writes it (ISO 8601, ``Z`` or naive UTC), aware; None if absent."""
    if not raw:
        return None
    seen = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    return seen if seen.tzinfo is not None else seen.replace(tzinfo=UTC)


@dataclass
class MembershipChanges:
    """What one application of the desired state changed."""

    added: dict[str, set[str]] = field(default_factory=dict)
    removed: dict[str, set[str]] = field(default_factory=dict)
    skipped_unknown_users: set[str] = field(default_factory=set)


async def apply_membership(
    hub: HubClient,
    desired: Mapping[str, set[str]],
    *,
    stop_removed_servers: bool = True,
) -> MembershipChanges:
    """Make each group in ``desired`` contain exactly the given users.

    Groups not named in ``desired`` are left alone. Users that do not exist in the Hub are
    skipped (and reported), so a deleted account never blocks everyone else. Removed learners'
    course servers are stopped.
    """
    current = await hub.groups()
    changes = MembershipChanges()
    for group, wanted in sorted(desired.items()):
        if group not in current:
            await hub.create_group(group)
            current[group] = set()
        have = current[group]
        to_add = set(wanted) - have
        existing = await _add_known_users(hub, group, to_add, changes) if to_add else set()
        to_remove = have - set(wanted)
        if existing:
            changes.added[group] = existing
            for user in sorted(existing):
                log.info("access granted", extra={"user": user, "group": group, "outcome": "added"})
        if to_remove:
            await hub.remove_members(group, to_remove)
            changes.removed[group] = to_remove
            for user in sorted(to_remove):
                log.info(
                    "access revoked", extra={"user": user, "group": group, "outcome": "removed"}
                )
            course_id = course_id_from_group(group)
            if stop_removed_servers and course_id is not None:
                for user in sorted(to_remove):
                    await hub.stop_server(user, course_id)
    return changes


async def _add_known_users(
    hub: HubClient, group: str, users: set[str], changes: MembershipChanges
) -> set[str]:
    """Add ``users`` to ``group`` in one request; return those added.

    The Hub refuses the whole request (400) if one user does not exist, so only then is each
    user looked up, and the unknown ones are skipped: one call per group in the usual case,
    not one per user.
    """
    try:
        await hub.add_members(group, users)
        return set(users)
    except HubAPIError as exc:
        if exc.status != 400:
            raise
    existing: set[str] = set()
    for user in sorted(users):
        if await hub.user(user) is None:
            changes.skipped_unknown_users.add(user)
        else:
            existing.add(user)
    if existing:
        await hub.add_members(group, existing)
    return existing


async def add_memberships(hub: HubClient, desired: Mapping[str, set[str]]) -> MembershipChanges:
    """Add each group's users to it, one request per group; never remove anyone.

    Reads no group's members: JupyterHub keeps a user who is already a member once, so adding
    again is harmless, and a group that does not exist yet is created. This is the sync for
    changes that can only add access (:func:`hub.entitlements.only_adds_access`); reading
    every group, as :func:`apply_membership` does, cost the Hub more with every member
    (benchmarks/edge.py).
    """
    changes = MembershipChanges()
    for group, wanted in sorted(desired.items()):
        if not wanted:
            continue
        try:
            added = await _add_known_users(hub, group, set(wanted), changes)
        except HubAPIError as exc:
            if exc.status != 404:
                raise
            await hub.create_group(group)
            added = await _add_known_users(hub, group, set(wanted), changes)
        if added:
            changes.added[group] = added
            for user in sorted(added):
                log.info("access granted", extra={"user": user, "group": group, "outcome": "added"})
    return changes


def instructor_membership(catalog: Catalog) -> dict[str, set[str]]:
    """Desired `instructors-<id>` groups, straight from each `course.yaml`."""
    return {instructor_group(e.course.id): set(e.course.instructors) for e in catalog}


def load_desired_membership(
    db: Database,
    catalog: Catalog,
    settings: Settings,
    *,
    now: datetime | None = None,
    users: Collection[str] | None = None,
) -> dict[str, set[str]]:
    """Desired groups of every catalog course (blocking).

    Learner groups come from the stored entitlements; instructor groups from each `course.yaml`.
    With ``users``: only the learner groups those users should be in, and only them in it.
    """
    # Imported here: the Hub's config and the CLI import this module for ACCESS_SCOPES and
    # HubClient, and should not load SQLAlchemy and Alembic to start.
    from hub.store import repository as repo
    from hub.store import utcnow

    with db.transaction() as session:
        rows = repo.access_rows(session, users)
        desired = desired_membership(
            rows,
            catalog,
            settings.payments.plans,
            now=now or utcnow(),
            grace=timedelta(days=settings.payments.grace_period_days),
        )
    if users is not None:
        return {group: members for group, members in desired.items() if members}
    desired.update(instructor_membership(catalog))
    return desired


class CoalescingSync:
    """Run an idempotent sync so that concurrent callers share runs.

    When ``await sync()`` returns, a run that *started after the call* has finished, so the
    caller's committed change is applied. Callers that arrive while a run is in progress share one
    follow-up run instead of queueing one each: a burst of N webhooks costs about two syncs, not
    N, and two syncs never interleave their reads and writes of a group.
    """

    def __init__(self, run: Callable[[], Awaitable[None]]) -> None:
        self._run = run
        self._current: asyncio.Future[None] | None = None
        self._follow_up: asyncio.Future[None] | None = None

    async def __call__(self) -> None:
        if self._current is None or self._current.done():
            self._current = asyncio.ensure_future(self._run())
            await asyncio.shield(self._current)
            return
        if self._follow_up is None:
            self._follow_up = asyncio.ensure_future(self._after(self._current))
        await asyncio.shield(self._follow_up)

    async def _after(self, current: asyncio.Future[None]) -> None:
        try:
            await current
        except Exception:  # noqa: S110 - its own callers got that error; we run afresh
            pass
        # From here on, newcomers need yet another run: this one may have read before them.
        self._follow_up = None
        self._current = asyncio.ensure_future(self._run())
        await self._current


class AccessSync(CoalescingSync):
    """The service's access sync: whole runs (coalesced), and additions for a few learners.

    ``await sync()`` makes every group match the entitlements (:class:`CoalescingSync`).
    ``await sync.add_granted(users)`` only adds ``users`` to the groups their entitlements
    give, for changes that can only add access (a purchase). The two never overlap: a whole
    run reads the entitlements before the groups, and an addition landing in between would be
    taken for a member to remove.
    """

    #: Seconds between retries of additions the Hub refused or did not answer; after the last,
    #: the periodic reconcile is left to heal them.
    RETRY_DELAYS: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

    def __init__(
        self,
        run: Callable[[], Awaitable[None]],
        add: Callable[[Collection[str]], Awaitable[None]],
        *,
        retry_delays: Sequence[float] | None = None,
    ) -> None:
        self._lock = asyncio.Lock()
        self._add = add
        self._retry_delays = tuple(self.RETRY_DELAYS if retry_delays is None else retry_delays)
        #: Learners whose addition failed and waits for a retry.
        self._pending: set[str] = set()
        self._retrying: asyncio.Task[None] | None = None

        async def locked_run() -> None:
            async with self._lock:
                await run()

        super().__init__(locked_run)

    async def add_granted(self, users: Collection[str]) -> None:
        """Add ``users`` to the groups their entitlements give them; remove no one.

        When the Hub fails (a timeout at a busy moment), the error still reaches the caller,
        and the users are also kept for a retry with back-off: a paid learner waits seconds
        for their group, not the next reconcile (minutes, and slow itself when the Hub is busy).
        """
        try:
            async with self._lock:
                await self._add(users)
        except HubAPIError:
            self._retry_later(users)
            raise

    @property
    def pending(self) -> frozenset[str]:
        """Learners whose addition failed and is still to be retried."""
        return frozenset(self._pending)

    def _retry_later(self, users: Collection[str]) -> None:
        self._pending.update(users)
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.ensure_future(self._retry())

    async def _retry(self) -> None:
        """Retry the pending additions together, backing off, until none is left."""
        for attempt, delay in enumerate(self._retry_delays, start=1):
            await asyncio.sleep(delay)
            users, self._pending = self._pending, set()
            try:
                async with self._lock:
                    await self._add(users)
            except HubAPIError as exc:
                self._pending |= users
                log.warning(
                    "adding learners to their groups failed again; will retry",
                    extra={"count": len(users), "attempt": attempt, "outcome": "retry",
                           "error": str(exc)},
                )  # fmt: skip
                continue
            log.info(
                "learners added to their groups on retry",
                extra={"count": len(users), "attempt": attempt, "outcome": "healed"},
            )
            if not self._pending:  # failures that came in meanwhile go round again
                return
        log.warning(
            "adding learners to their groups still fails; the reconcile will heal it",
            extra={"count": len(self._pending), "outcome": "gave_up"},
        )
        self._pending.clear()


def make_access_sync(
    db: Database,
    catalog: Catalog,
    settings: Settings,
    hub: HubClient,
    *,
    on_sync: Callable[[MembershipChanges | None], None] | None = None,
) -> AccessSync:
    """A ``sync_access`` callable for :class:`hub.billing.fulfilment.Billing` and the service.

    Concurrent calls are coalesced (:class:`CoalescingSync`). Raises
    :class:`hub.errors.HubAPIError` when the Hub cannot be reached. ``on_sync`` is told what
    each run changed, or None when it failed (the service's metrics).
    """

    def report(changes: MembershipChanges | None) -> None:
        if on_sync is not None:
            on_sync(changes)

    async def run() -> None:
        try:
            desired = await asyncio.to_thread(load_desired_membership, db, catalog, settings)
            changes = await apply_membership(hub, desired)
        except HubAPIError:
            report(None)
            raise
        report(changes)

    async def add(users: Collection[str]) -> None:
        try:
            desired = await asyncio.to_thread(
                partial(load_desired_membership, db, catalog, settings, users=users)
            )
            changes = await add_memberships(hub, desired)
        except HubAPIError:
            report(None)
            raise
        report(changes)

    return AccessSync(run, add)
